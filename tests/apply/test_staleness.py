"""Stale saved plans are refused with the reason named."""

from __future__ import annotations

from reconciler.apply.staleness import stale_reasons
from reconciler.model import (
    DefaultChange,
    FieldChange,
    Plan,
    PolicyCreate,
    PolicyUpdate,
    UserChange,
)


def user(i: int, after: str | None = "Block", before: str | None = None) -> UserChange:
    return UserChange("user_assign", f"user{i}@contoso.com", f"u-{i}", before, after, "everyone")


def plan(
    *changes, fingerprint: str = "sha256:a", inputs=None, tenant="contoso.onmicrosoft.com"
) -> Plan:
    return Plan(
        tenant=tenant,
        fingerprint=fingerprint,
        changes=tuple(changes),
        inputs=inputs or {"config": "c1", "policies": "p1", "default": "d1", "users": "u1"},
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
    assert stale_reasons(saved, fresh) == [
        "policy 'Block Basic Auth' switches changed",
        "the default changed from none to 'Legacy'",
        "3 user(s) changed (first few: user0@contoso.com (the plan's change is no longer "
        "needed), user1@contoso.com (the plan's change is no longer needed), user9@contoso.com "
        "(needs a change the plan does not have))",
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


def test_fingerprint_moved_without_a_visible_change_names_the_inputs() -> None:
    fresh = plan(
        fingerprint="sha256:b",
        inputs={"config": "c1", "policies": "p1", "default": "d1", "users": "u2"},
    )
    assert stale_reasons(plan(), fresh) == [
        "the live tenant changed since the plan was made (users)"
    ]
