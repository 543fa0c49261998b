"""Stale saved plans are refused with the reason named."""

from __future__ import annotations

import dataclasses

from reconciler.apply.staleness import check_saved_plan, stale_reasons
from reconciler.model import (
    DefaultChange,
    FieldChange,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyUpdate,
    SmtpOrgChange,
    UserChange,
)


def user(i: int, after: str | None = "Block", before: str | None = None) -> UserChange:
    return UserChange("user_assign", f"user{i}@contoso.com", f"u-{i}", before, after, "everyone")


def plan(
    *changes,
    fingerprint: str = "sha256:a",
    inputs=None,
    tenant="contoso.onmicrosoft.com",
    as_of=None,
) -> Plan:
    return Plan(
        tenant=tenant,
        fingerprint=fingerprint,
        changes=tuple(changes),
        inputs=inputs or {"config": "c1", "policies": "p1", "default": "d1", "users": "u1"},
        as_of=as_of,
    )


def test_identical_plans_are_not_stale() -> None:
    saved = plan(user(1), user(2))
    assert stale_reasons(saved, plan(user(1), user(2))) == []


def test_config_change_is_named() -> None:
    saved = plan(user(1))
    fresh = plan(
        user(1),
        fingerprint="sha256:b",
        inputs={"config": "c2", "policies": "p1", "default": "d1", "users": "u1"},
    )
    assert stale_reasons(saved, fresh) == ["config changed since the plan was made"]


def test_policy_switches_default_and_users_are_named() -> None:
    saved = plan(
        PolicyUpdate("Block Basic Auth", (FieldChange("smtp", True, False),)),
        DefaultChange(before=None, after="Block Basic Auth", affected_users=3),
        *[user(i) for i in range(8)],
    )
    fresh = plan(
        PolicyUpdate(
            "Block Basic Auth", (FieldChange("smtp", True, False), FieldChange("imap", True, False))
        ),
        DefaultChange(before="Legacy", after="Block Basic Auth", affected_users=3),
        *[user(i) for i in range(2, 8)],
        user(9),
        fingerprint="sha256:b",
    )
    # user9 needs a change the saved plan lacks: not written, and no reason to refuse.
    assert stale_reasons(saved, fresh) == [
        "policy 'Block Basic Auth' switches changed",
        "the default changed from none to 'Legacy'",
        "2 user(s) changed (first few: user0@contoso.com (the plan's change is no longer "
        "needed), user1@contoso.com (the plan's change is no longer needed))",
    ]


def test_policy_created_outside_the_plan_and_default_already_set() -> None:
    saved = plan(
        PolicyCreate("Devices", frozenset({"smtp"})),
        DefaultChange(before="Old", after="Devices", affected_users=1),
    )
    fresh = plan(fingerprint="sha256:b")
    assert stale_reasons(saved, fresh) == [
        "policy 'Devices' was created since the plan was made",
        "the default changed from 'Old' to 'Devices'",
    ]


def test_other_tenant_is_named_first() -> None:
    assert stale_reasons(plan(), plan(tenant="fabrikam.onmicrosoft.com")) == [
        "the plan was made for tenant 'contoso.onmicrosoft.com', not 'fabrikam.onmicrosoft.com'"
    ]


def test_a_busy_tenant_writes_the_saved_changes_only() -> None:
    # Users joined and others moved since the plan, but not the ones it changes: the saved
    # changes are written (as the fresh plan has them) and the new ones are left out, named.
    saved = plan(user(1), user(2), as_of="2026-12-01")
    fresh = plan(
        user(1),
        user(2),
        user(3),
        fingerprint="sha256:b",
        inputs={"config": "c1", "policies": "p1", "default": "d1", "users": "u2"},
        as_of="2026-12-02",
    )
    check = check_saved_plan(saved, fresh)
    assert check.reasons == []
    assert check.to_write == (user(1), user(2))
    assert check.not_in_saved == (user(3),)


def test_a_saved_change_that_held_only_on_its_date_is_refused() -> None:
    # The exception expired between plan and apply: the fresh plan moves user1 elsewhere.
    saved = plan(user(1, after="Relay"), as_of="2027-03-30")
    fresh = plan(user(1, after="Block"), as_of="2027-03-31")
    assert stale_reasons(saved, fresh) == [
        "1 user(s) changed (first few: user1@contoso.com (after 'Relay' -> 'Block'))",
        "the plan was made for 2027-03-30; apply always plans for today, 2027-03-31 (a rule "
        "may have expired since)",
    ]


def test_fresh_changes_a_saved_one_depends_on_are_required() -> None:
    # The plan deletes Legacy; since then someone put user7 on it: deleting would orphan them.
    saved = plan(PolicyDelete("Legacy"), user(1, after="Block", before="Legacy"))
    fresh = plan(user(1, after="Block", before="Legacy"), user(7, after="Block", before="Legacy"))
    fresh = plan(*fresh.changes, PolicyDelete("Legacy"))
    assert stale_reasons(saved, fresh) == [
        "the plan deletes policy 'Legacy', but 1 holder(s) of it that the plan does not move "
        "hold it now (first few: user7@contoso.com)"
    ]
    # The plan assigns Devices, which somebody deleted since: the create it needs is missing.
    saved = plan(user(1, after="Devices"))
    fresh = plan(PolicyCreate("Devices", frozenset({"smtp"})), user(1, after="Devices"))
    assert stale_reasons(saved, fresh) == [
        "policy 'Devices' must be created again before the plan's assignments to it (it was "
        "deleted since the plan was made)"
    ]


def test_org_and_mailbox_smtp_changes_are_matched_too() -> None:
    mailbox = MailboxSmtpChange("a@contoso.com", "u-a", "enabled", "organization", "everyone")
    saved = plan(SmtpOrgChange(None, "disabled"), mailbox)
    assert stale_reasons(saved, plan(SmtpOrgChange(None, "disabled"), mailbox)) == []
    moved = dataclasses.replace(mailbox, before="disabled")
    assert stale_reasons(saved, plan(SmtpOrgChange("enabled", "disabled"), moved)) == [
        "the organization's SMTP AUTH changed from unknown to enabled since the plan was made",
        "1 user(s) changed (first few: a@contoso.com (SMTP AUTH) (before 'enabled' -> 'disabled'))",
    ]
