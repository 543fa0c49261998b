"""The plan JSON: DESIGN.md's format_version 1 shape, byte-stable, and its exact inverse."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import PlanError
from reconciler.model import (
    PROTOCOL_NAMES,
    FieldChange,
    MailboxSmtpChange,
    Plan,
    PolicyDelete,
    PolicyReplace,
    ReplaceResume,
    SmtpOrgChange,
    UserChange,
)
from reconciler.render import plan_from_json, plan_to_json
from tests.render.scenarios import SCENARIOS, contoso_plan


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_round_trip_is_exact(name: str) -> None:
    plan = SCENARIOS[name]()
    text = plan_to_json(plan)
    assert plan_from_json(text) == plan
    assert plan_to_json(plan_from_json(text)) == text


def test_design_shape() -> None:
    data = json.loads(plan_to_json(contoso_plan()))
    assert list(data) == [
        "format_version",
        "tenant",
        "fingerprint",
        "inputs",
        "default_policy",
        "default_policy_before",
        "as_of",
        "mailboxes_read",
        "summary",
        "changes",
        "warnings",
        "guards",
    ]
    assert data["format_version"] == 1
    assert data["default_policy"] == "Block Basic Auth"  # after the plan
    assert data["summary"] == {
        "policy_create": 1,
        "policy_update": 1,
        "policy_delete": 1,
        "default_change": 1,
        "smtp_org_change": 0,
        "mailbox_smtp_change": 0,
        "user_assign": 5,
        "user_clear": 1,
        "total": 10,
    }
    create, update, default, *users, delete = data["changes"]
    assert list(create["after"]) == list(PROTOCOL_NAMES)  # all 12, by short name
    assert create["after"]["smtp"] is True and sum(create["after"].values()) == 1
    assert update["fields"] == {
        "imap": {"before": True, "after": False},
        "smtp": {"before": True, "after": False},
    }
    assert default == {
        "kind": "default_change",
        "before": None,
        "after": "Block Basic Auth",
        "affected_users": 2,
    }
    assert users[-2] == {
        "kind": "user_assign",
        "user": "scanner-03@contoso.com",
        "user_id": "id-scanner-03@contoso.com",
        "before": "Strict",
        "after": "SMTP relay devices",
        "rule": "devices",
        "effective_before": {"policy": "Strict", "via": "direct"},
        "effective_after": {"policy": "SMTP relay devices", "via": "direct"},
        "weakens": True,
    }
    assert "weakens" not in users[0]
    assert delete == {"kind": "policy_delete", "policy": "Legacy 2018 Policy"}
    assert list(data["inputs"]) == ["config", "policies", "default", "users", "groups", "as_of"]


def test_replace_round_trips_and_is_counted_apart() -> None:
    plan = Plan(
        tenant="t",
        fingerprint="sha256:x",
        changes=(
            PolicyReplace(
                "P", (FieldChange("pop", True, False),), frozenset({"smtp"}), ("id-1",), True
            ),
        ),
    )
    text = plan_to_json(plan)
    assert json.loads(text)["summary"]["policy_replace"] == 1
    assert plan_from_json(text) == plan


BAD = "PLAN.json is not a valid authpolicy plan: "


def _edited(**top) -> str:
    data = json.loads(plan_to_json(contoso_plan()))
    data.update(top)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{not json",
            "PLAN.json is not valid JSON (line 1, column 2: "
            "Expecting property name enclosed in double quotes)",
        ),
        ("[]", BAD + "the document: expected an object"),
        (
            "{}",
            "PLAN.json has plan format_version null; this authpolicy reads format_version 1 "
            "(make the plan again with this version)",
        ),
        (
            _edited(format_version=2),
            "PLAN.json has plan format_version 2; this authpolicy reads format_version 1 "
            "(make the plan again with this version)",
        ),
        (
            _edited(changes=[{"kind": "policy_rename", "policy": "x"}]),
            BAD + "changes[0].kind: unknown change kind 'policy_rename'",
        ),
        (
            _edited(changes=[{"kind": "policy_delete"}]),
            BAD + "changes[0]: missing 'policy'",
        ),
        (
            _edited(
                changes=[
                    {
                        "kind": "user_clear",
                        "user": "a",
                        "user_id": "1",
                        "before": "X",
                        "after": "Y",
                        "rule": "r",
                    }
                ]
            ),
            BAD + "changes[0].after: does not fit kind 'user_clear'",
        ),
        (
            _edited(changes=[{"kind": "policy_create", "policy": "P", "after": {"smtp": True}}]),
            BAD + "changes[0].after: expected exactly the 12 protocol switches",
        ),
        (
            _edited(summary={"total": 10}),
            BAD + "summary: the counts do not match the changes (was the file edited?)",
        ),
        (
            _edited(guards=[{"name": "x"}]),
            BAD + "guards[0]: missing 'message'",
        ),
    ],
)
def test_bad_plan_files_get_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(PlanError) as err:
        plan_from_json(text, source="PLAN.json")
    assert str(err.value) == message


@settings(max_examples=150, deadline=None)
@given(st.text(), st.text(), st.none() | st.text(), st.text(), st.lists(st.text(), max_size=3))
def test_any_strings_round_trip_and_nothing_invisible_is_written_raw(
    upn: str, policy: str, before: str | None, rule: str, warnings: list[str]
) -> None:
    plan = Plan(
        tenant="t",
        fingerprint="sha256:x",
        changes=(
            PolicyDelete(policy),
            UserChange("user_assign", upn, "id", before, policy, rule, weakens=True),
        ),
        warnings=tuple(warnings),
    )
    text = plan_to_json(plan)
    assert plan_from_json(text) == plan
    assert "\u202e" not in text and "\u2028" not in text and "\x85" not in text


def test_smtp_changes_round_trip_with_effective_policies_and_basic_smtp() -> None:
    plan = Plan(
        tenant="t",
        fingerprint="sha256:x",
        changes=(
            SmtpOrgChange(None, "disabled", affected_users=3),
            MailboxSmtpChange(
                "a@c.com",
                "id-a",
                "enabled",
                "organization",
                "everyone",
                False,
                "allowed",
                "blocked",
            ),
            UserChange(
                "user_clear",
                "b@c.com",
                "id-b",
                "Relay",
                None,
                "break-glass",
                False,
                "allowed",
                "blocked",
            ),
        ),
        default_policy="Block",
        default_before=None,
        as_of="2026-12-27",
        mailboxes_read=True,
    )
    text = plan_to_json(plan)
    assert plan_from_json(text) == plan
    assert plan_to_json(plan_from_json(text)) == text
    data = json.loads(text)
    assert (data["as_of"], data["mailboxes_read"], data["default_policy_before"]) == (
        "2026-12-27",
        True,
        None,
    )
    org, box, user = data["changes"]
    assert org == {
        "kind": "smtp_org_change",
        "before": None,
        "after": "disabled",
        "affected_users": 3,
    }
    assert box["basic_smtp"] == {"before": "allowed", "after": "blocked"}
    assert user["effective_before"] == {"policy": "Relay", "via": "direct"}
    assert user["effective_after"] == {"policy": "Block", "via": "default"}
    assert data["summary"]["smtp_org_change"] == 1 and data["summary"]["mailbox_smtp_change"] == 1
    bad = text.replace('"after": "organization"', '"after": "sometimes"')
    with pytest.raises(PlanError, match=r"changes\[1\]: expected before/after among"):
        plan_from_json(bad)


def test_a_replace_resume_round_trips_and_is_counted_apart() -> None:
    plan = Plan(
        tenant="t",
        fingerprint="sha256:x",
        changes=(ReplaceResume("Block", "authpolicy-holding-0123456789abcdef", ("id-1",), True),),
    )
    text = plan_to_json(plan)
    assert plan_from_json(text) == plan
    data = json.loads(text)
    assert data["changes"][0] == {
        "kind": "replace_resume",
        "policy": "Block",
        "holding": "authpolicy-holding-0123456789abcdef",
        "holders": ["id-1"],
        "default": True,
    }
    assert data["summary"]["replace_resume"] == 1
