"""Verification re-reads the tenant and reports applied changes that do not hold."""

from __future__ import annotations

from dataclasses import replace

from reconciler.apply import execute_plan
from reconciler.apply.verify import USER_SAMPLE, even_sample, verify_report
from reconciler.model import (
    DefaultChange,
    FieldChange,
    Plan,
    PolicyCreate,
    PolicyUpdate,
    SnapshotNeeds,
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
    assert verify_report(report, tenant).problems == []

    # Someone else moves a user and turns a switch back on right after the apply.
    tenant.users["u-1"] = replace(tenant.users["u-1"], policy="Block")
    tenant.policies["Block"] = frozenset({"smtp"})
    assert verify_report(report, tenant).problems == [
        "update policy 'Block': switch(es) smtp did not take",
        "user user1@contoso.com -> 'Devices': the user holds 'Block', expected 'Devices'",
    ]


def _user_plan(tenant: FakeTenant, targets: list[str]) -> Plan:
    return Plan(
        tenant=tenant.name,
        fingerprint="sha256:x",
        changes=tuple(
            UserChange("user_assign", f"user{i}@contoso.com", f"u-{i}", None, target, "r")
            for i, target in enumerate(targets)
        ),
    )


def test_a_sample_of_the_changed_users_is_reread_and_the_policies_without_user_pages() -> None:
    # 500 users to Devices, 1 to Kiosk, then 499 more to Devices: the sample is USER_SAMPLE
    # users, Kiosk's one user among them, and the policies are read without reading any user page.
    targets = ["Devices"] * 500 + ["Kiosk"] + ["Devices"] * 499
    tenant = FakeTenant.with_users(1000, policies={"Devices": [], "Kiosk": []})
    plan = _user_plan(tenant, targets)
    report = execute_plan(plan, tenant, revoke_sessions=False)
    read: list[list[str]] = []
    real_read_users = tenant.read_users
    tenant.read_users = lambda ids: read.append(list(ids)) or real_read_users(ids)  # type: ignore[method-assign]
    needs: list[SnapshotNeeds] = []
    real_snapshot = tenant.read_snapshot
    tenant.read_snapshot = lambda n, p=None: needs.append(n) or real_snapshot(n, p)  # type: ignore[method-assign]

    result = verify_report(report, tenant)
    assert needs == [SnapshotNeeds(users=False)]
    assert len(read) == 1 and len(read[0]) == USER_SAMPLE == len(set(read[0]))
    assert "u-500" in read[0]  # the only Kiosk user
    assert (result.users_changed, result.users_checked, result.problems) == (1000, USER_SAMPLE, [])
    assert result.summary() == (
        f"Verified: {USER_SAMPLE} of 1,000 changed users (an even sample; --check-users all "
        "re-reads every one) hold."
    )

    # A systematic failure shows in the sample: every write "took" on the wrong policy.
    for uid in list(tenant.users):
        tenant.users[uid] = replace(tenant.users[uid], policy=None)
    result = verify_report(report, tenant)
    assert len(result.problems) == USER_SAMPLE
    assert result.summary().startswith(f"Verification: {USER_SAMPLE} applied change(s) do not hold")

    read.clear()
    assert len(verify_report(report, tenant, users="all").problems) == 1000
    assert len(read[0]) == 1000


def test_even_sample_spreads_over_the_changes_and_keeps_every_target() -> None:
    items = [(f"u-{i}", "A" if i % 250 else f"T{i}") for i in range(1000)]
    chosen = even_sample(items, 10)
    assert len(chosen) == 10 and chosen == sorted(chosen, key=lambda x: int(x[0][2:]))
    assert {t for _, t in items if t != "A"} <= {t for _, t in chosen}  # T0, T250, T500, T750
    assert even_sample(items[:7], 10) == items[:7]
    assert [uid for uid, _ in even_sample([(f"u-{i}", "A") for i in range(100)], 4)] == [
        "u-0",
        "u-25",
        "u-50",
        "u-75",
    ]


def test_nothing_applied_reads_nothing() -> None:
    tenant = FakeTenant.with_users(2)
    plan = _user_plan(tenant, ["Devices", "Devices"])
    report = execute_plan(plan, tenant, revoke_sessions=False)  # Devices does not exist
    assert report.counts["applied"] == 0
    before = tenant.snapshot_reads
    result = verify_report(report, tenant)
    assert tenant.snapshot_reads == before and result.summary() == ""
