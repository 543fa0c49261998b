"""Verification re-reads the tenant and reports applied changes that do not hold."""

from __future__ import annotations

from dataclasses import replace

from reconciler.apply import execute_plan
from reconciler.apply.verify import verify_report
from reconciler.model import (
    DefaultChange,
    FieldChange,
    Plan,
    PolicyCreate,
    PolicyUpdate,
    UserChange,
)
from tests.fakes import FakeTenant


def test_changes_that_hold_give_no_problems_and_drift_after_apply_is_reported() -> None:
    tenant = FakeTenant.with_users(3, policies={"Block": ["smtp"]})
    plan = Plan(
        tenant=tenant.name,
        fingerprint="sha256:x",
        changes=(
            PolicyCreate("Devices", frozenset({"smtp"})),
            PolicyUpdate("Block", (FieldChange("smtp", True, False),)),
            DefaultChange(before=None, after="Block", affected_users=3),
            *[
                UserChange("user_assign", f"user{i}@contoso.com", f"u-{i}", None, "Devices", "r")
                for i in range(3)
            ],
        ),
    )
    report = execute_plan(plan, tenant, revoke_sessions=False)
    assert verify_report(report, tenant) == []

    # Someone else moves a user and turns a switch back on right after the apply.
    tenant.users["u-1"] = replace(tenant.users["u-1"], policy="Block")
    tenant.policies["Block"] = frozenset({"smtp"})
    assert verify_report(report, tenant) == [
        "update policy 'Block': switch(es) smtp did not take",
        "user user1@contoso.com -> 'Devices': the user holds 'Block', expected 'Devices'",
    ]
