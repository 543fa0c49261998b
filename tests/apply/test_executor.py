"""The executor against the in-memory fake: order, prerequisites, faults, concurrency, Ctrl-C."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from reconciler.apply import MemoryAudit, execute_plan
from reconciler.apply.executor import INTERRUPTED
from reconciler.model import (
    DefaultChange,
    FieldChange,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    ReplaceResume,
    SmtpOrgChange,
    UserChange,
    holding_name,
)
from tests.fakes import NULL_REFERENCE_MESSAGE, FakeTenant


def assign(i: int, after: str | None, before: str | None = None) -> UserChange:
    return UserChange(
        kind="user_assign" if after is not None else "user_clear",
        user=f"user{i}@contoso.com",
        user_id=f"u-{i}",
        before=before,
        after=after,
        rule="everyone",
    )


def make_plan(*changes) -> Plan:
    return Plan(tenant="contoso.onmicrosoft.com", fingerprint="sha256:test", changes=tuple(changes))


def no_sleep(_: float) -> None:
    return None


def run(plan: Plan, tenant: FakeTenant, **kwargs):
    kwargs.setdefault("revoke_sessions", False)
    kwargs.setdefault("sleep", no_sleep)
    return execute_plan(plan, tenant, **kwargs)


def test_every_phase_applied_with_exactly_one_write_per_change() -> None:
    tenant = FakeTenant.with_users(
        25,
        policy="Legacy",
        policies={"Legacy": ["imap"], "Block": ["smtp"]},
        default_policy="Legacy",
    )
    plan = make_plan(
        PolicyCreate("Devices", frozenset({"smtp"})),
        PolicyUpdate("Block", (FieldChange("smtp", True, False),)),
        DefaultChange(before="Legacy", after="Block", affected_users=0),
        *[assign(i, "Devices" if i < 5 else "Block", before="Legacy") for i in range(25)],
        PolicyDelete("Legacy"),
    )
    report = run(plan, tenant)

    assert report.ok
    assert report.counts == {"applied": 29, "failed": 0, "skipped": 0, "not_found": 0}
    assert len(tenant.writes) == len(plan.changes)
    assert [w.cmdlet for w in tenant.writes[:3]] == [
        "New-AuthenticationPolicy",
        "Set-AuthenticationPolicy",
        "Set-OrganizationConfig",
    ]
    assert tenant.writes[-1].cmdlet == "Remove-AuthenticationPolicy"
    assert tenant.policies == {"Devices": frozenset({"smtp"}), "Block": frozenset()}
    assert tenant.default_policy == "Block"
    assert {u.policy for u in tenant.users.values() if u.id in {f"u-{i}" for i in range(5)}} == {
        "Devices"
    }
    assert sum(1 for u in tenant.users.values() if u.policy == "Block") == 20
    assert sorted(tenant.user_batches) == [5, 10, 10]


def test_failed_create_skips_its_dependants_and_independent_changes_continue() -> None:
    tenant = FakeTenant.with_users(12, policy="Old", policies={"Old": [], "Block": []})
    tenant.fail_create["Devices"] = "The policy name is reserved."
    plan = make_plan(
        PolicyCreate("Devices", frozenset({"smtp"})),
        DefaultChange(before=None, after="Devices", affected_users=0),
        *[assign(i, "Devices" if i < 2 else "Block", before="Old") for i in range(12)],
        PolicyDelete("Old"),
    )
    report = run(plan, tenant)

    by_kind = [(o.change.kind, o.status) for o in report.outcomes]
    assert by_kind[0] == ("policy_create", "failed")
    assert report.outcomes[0].message == "The policy name is reserved."
    assert report.outcomes[1].status == "skipped"
    assert report.outcomes[1].message == "skipped because create policy 'Devices' failed"
    assert [o.status for o in report.outcomes[2:4]] == ["skipped", "skipped"]
    assert all(o.status == "applied" for o in report.outcomes[4:14])
    delete = report.outcomes[-1]
    assert delete.status == "skipped"
    assert delete.message == (
        "skipped because 2 change(s) moving off 'Old' did not succeed (first: user "
        "user0@contoso.com -> 'Devices'); deleting it now would orphan them"
    )
    assert not report.ok
    # The skipped changes wrote nothing: one failed create attempt is not a write.
    assert [w.cmdlet for w in tenant.writes].count("Set-User") == 10
    assert "Old" in tenant.policies
    assert tenant.users["u-0"].policy == "Old"


def test_null_reference_update_stops_for_that_policy_and_says_how_to_proceed() -> None:
    tenant = FakeTenant.with_users(3, policies={"Block": ["smtp"], "Other": ["pop"]})
    tenant.fail_update["Block"] = NULL_REFERENCE_MESSAGE
    plan = make_plan(
        PolicyUpdate("Block", (FieldChange("smtp", True, False),)),
        PolicyUpdate("Other", (FieldChange("pop", True, False),)),
        *[assign(i, "Block") for i in range(3)],
    )
    report = run(plan, tenant)

    first = report.outcomes[0]
    assert first.status == "failed"
    assert first.message == (
        "Exchange failed Set-AuthenticationPolicy for 'Block' with a known service bug "
        "(Object reference not set to an instance of an object.); nothing was changed for this "
        "policy. Rerun 'authpolicy apply --allow-replace' to recreate it (remove, create with the "
        "same name and switches, reassign its users and the default); it plans again and shows "
        "the replace before anything is done."
    )
    assert [o.status for o in report.outcomes[1:]] == ["applied"] * 4
    assert tenant.policies["Block"] == frozenset({"smtp"})
    assert tenant.policies["Other"] == frozenset()


def replace_change(holders: tuple[str, ...], is_default: bool) -> PolicyReplace:
    return PolicyReplace(
        policy="Block",
        fields=(FieldChange("smtp", True, False),),
        after=frozenset(),
        holders=holders,
        is_default=is_default,
    )


def test_replace_keeps_holders_and_default_on_a_holding_policy_until_the_recreate() -> None:
    tenant = FakeTenant.with_users(
        13, policy="Block", policies={"Block": ["smtp"]}, default_policy="Block"
    )
    tenant.remove_referenced = "reject"  # Exchange may refuse to remove a policy in use
    holders = tuple(f"u-{i}" for i in range(13))
    audit = MemoryAudit()
    report = run(make_plan(replace_change(holders, True)), tenant, allow_replace=True, audit=audit)

    assert report.ok, report.outcomes
    assert tenant.policies == {"Block": frozenset()}  # the holding policy is gone again
    assert tenant.default_policy == "Block"
    assert {u.policy for u in tenant.users.values()} == {"Block"}
    steps = [r.get("step") for r in audit.records]
    assert steps == (
        ["hold_create"]
        + ["hold"] * 13
        + ["hold_default", "remove", "create"]
        + ["reassign"] * 13
        + ["reassign_default", "release", None]
    )
    assert audit.records[-1]["result"] == "applied"
    assert audit.records[-1]["change"]["holders"] == list(holders)
    hold = holding_name("Block")
    assert [(w.cmdlet, w.target) for w in tenant.writes if w.cmdlet != "Set-User"] == [
        ("New-AuthenticationPolicy", hold),
        ("Set-OrganizationConfig", ""),
        ("Remove-AuthenticationPolicy", "Block"),
        ("New-AuthenticationPolicy", "Block"),
        ("Set-OrganizationConfig", ""),
        ("Remove-AuthenticationPolicy", hold),
    ]
    # The holding policy blocks whatever the policy blocked before or after (smtp off).
    assert next(w for w in tenant.writes if w.target == hold).value == frozenset()


def test_replace_without_consent_is_skipped_and_writes_nothing() -> None:
    tenant = FakeTenant.with_users(2, policy="Block", policies={"Block": ["smtp"]})
    report = run(make_plan(replace_change(("u-0", "u-1"), False)), tenant)
    assert report.outcomes[0].status == "skipped"
    assert report.outcomes[0].message == (
        "replacing 'Block' removes and recreates it; rerun with --allow-replace"
    )
    assert tenant.writes == []


def test_replace_whose_create_fails_leaves_everyone_protected_on_the_holding_policy() -> None:
    tenant = FakeTenant.with_users(3, policy="Block", policies={"Block": ["smtp"]})
    tenant.fail_create["Block"] = "Transient failure."
    report = run(
        make_plan(replace_change(("u-0", "u-1"), False), assign(2, "Block")),
        tenant,
        allow_replace=True,
    )
    hold = holding_name("Block")
    assert report.outcomes[0].status == "failed"
    assert report.outcomes[0].message == (
        "'Block' was removed but could not be created again: Transient failure.; its users are "
        f"on '{hold}' (the same protection). Rerun apply to finish."
    )
    assert report.outcomes[1].message == "skipped because replace policy 'Block' failed"
    assert {tenant.users[u].policy for u in ("u-0", "u-1")} == {hold}


def test_deleted_user_is_not_found_and_the_run_is_still_ok() -> None:
    tenant = FakeTenant.with_users(4, policies={"Block": []})
    tenant.delete_user("u-2")
    report = run(make_plan(*[assign(i, "Block") for i in range(4)]), tenant)
    assert [o.status for o in report.outcomes] == ["applied", "applied", "not_found", "applied"]
    assert report.ok


def test_user_failure_carries_exchange_message_and_fails_the_run() -> None:
    tenant = FakeTenant.with_users(3, policies={"Block": []})
    tenant.fail_user["u-1"] = "The user is synchronized from on-premises and is read-only."
    report = run(make_plan(*[assign(i, "Block") for i in range(3)]), tenant)
    assert report.outcomes[1].status == "failed"
    assert (
        report.outcomes[1].message == "The user is synchronized from on-premises and is read-only."
    )
    assert report.counts["applied"] == 2
    assert not report.ok


def test_revoke_sessions_travels_in_the_same_set_user_call() -> None:
    tenant = FakeTenant.with_users(2, policies={"Block": []})
    run(make_plan(assign(0, "Block"), assign(1, "Block")), tenant, revoke_sessions=True)
    assert [(w.cmdlet, w.revoke_sessions) for w in tenant.writes] == [("Set-User", True)] * 2


def test_throttled_batches_are_resent_and_nothing_is_written_twice() -> None:
    tenant = FakeTenant.with_users(95, policies={"Block": []})
    tenant.throttle_batches = 4
    tenant.retried_batches = 2
    audit = MemoryAudit()
    report = run(make_plan(*[assign(i, "Block") for i in range(95)]), tenant, audit=audit)

    assert report.ok
    assert len(tenant.writes) == 95
    assert report.retries == 4 + 2 * 10
    assert len(audit.records) == 95
    assert sum(r["attempts"] for r in audit.records) >= 95 + 20


def test_batches_of_ten_stay_within_the_concurrency_limit() -> None:
    tenant = FakeTenant.with_users(400, policies={"Block": []})
    barrier = threading.Event()

    def slow(_writes) -> None:
        barrier.wait(0.002)

    tenant.before_user_batch = slow
    report = run(
        make_plan(*[assign(i, "Block") for i in range(400)]),
        tenant,
        max_concurrency=3,
        initial_concurrency=3,
    )
    assert report.ok
    assert set(tenant.user_batches) == {10}
    assert 1 <= tenant.max_in_flight <= 3


def test_stop_lets_in_flight_batches_finish_and_reports_the_rest_as_not_started() -> None:
    tenant = FakeTenant.with_users(60, policies={"Block": []})
    stop = threading.Event()
    tenant.before_user_batch = lambda writes: stop.set()
    audit = MemoryAudit()
    plan = make_plan(*[assign(i, "Block") for i in range(60)], PolicyDelete("Block"))
    report = run(plan, tenant, stop=stop, audit=audit, initial_concurrency=1, max_concurrency=1)

    assert report.interrupted
    assert not report.ok
    assert report.counts == {"applied": 10, "failed": 0, "skipped": 51, "not_found": 0}
    assert {o.message for o in report.outcomes if o.status == "skipped"} == {INTERRUPTED}
    assert len(tenant.writes) == 10
    assert len(audit.records) == 61
    assert "Block" in tenant.policies


@pytest.mark.parametrize("status", ["failed", "not_found"])
def test_delete_depends_on_default_moving_off_the_policy(status: str) -> None:
    tenant = FakeTenant(policies={"Old": frozenset(), "New": frozenset()}, default_policy="Old")
    tenant.fail_default = "Default cannot be changed now." if status == "failed" else None
    report = run(
        make_plan(DefaultChange(before="Old", after="New", affected_users=3), PolicyDelete("Old")),
        tenant,
    )
    if status == "failed":
        assert report.outcomes[1].status == "skipped"
        assert "Old" in tenant.policies
    else:
        assert report.outcomes[1].status == "applied"
        assert "Old" not in tenant.policies


def test_replace_also_detaches_the_holders_and_default_that_the_plan_moves_later() -> None:
    # The replace runs before the user and default changes, so the users and the default the
    # plan moves elsewhere still hold the policy when it is removed. Exchange refusing to remove
    # a policy in use must not fail the replace: they are detached too, and not reattached
    # (their own changes follow).
    tenant = FakeTenant.with_users(
        3, policy="Block", policies={"Block": ["smtp"], "Other": []}, default_policy="Block"
    )
    tenant.remove_referenced = "reject"
    replace = PolicyReplace(
        policy="Block",
        fields=(FieldChange("smtp", True, False),),
        after=frozenset(),
        holders=("u-0", "u-1"),
        moved_holders=("u-2",),
        default_moves=True,
    )
    report = run(
        make_plan(
            replace,
            DefaultChange(before="Block", after="Other", affected_users=0),
            UserChange("user_assign", "user2@contoso.com", "u-2", "Block", "Other", "devices"),
        ),
        tenant,
        allow_replace=True,
    )

    assert report.ok, report.outcomes
    assert tenant.policies["Block"] == frozenset()
    assert tenant.default_policy == "Other"
    assert {i: u.policy for i, u in tenant.users.items()} == {
        "u-0": "Block",
        "u-1": "Block",
        "u-2": "Other",
    }


def test_replace_whose_remove_fails_puts_everyone_back_and_leaves_the_policy() -> None:
    tenant = FakeTenant.with_users(2, policy="Block", policies={"Block": ["smtp"]})
    tenant.fail_remove["Block"] = "Policy is locked."
    report = run(make_plan(replace_change(("u-0", "u-1"), False)), tenant, allow_replace=True)

    assert report.outcomes[0].status == "failed"
    assert report.outcomes[0].message == (
        "moving its users aside or removing it failed, the policy is unchanged: Policy is locked."
    )
    assert tenant.policies == {"Block": frozenset({"smtp"})}
    assert {u.policy for u in tenant.users.values()} == {"Block"}


def test_a_resume_moves_the_holders_and_default_back_and_removes_the_holding_policy() -> None:
    hold = holding_name("Block")
    tenant = FakeTenant.with_users(
        12, policy=hold, policies={"Block": [], hold: []}, default_policy=hold
    )
    resume = ReplaceResume("Block", hold, tuple(f"u-{i}" for i in range(12)), default=True)
    audit = MemoryAudit()
    report = run(make_plan(resume), tenant, audit=audit)
    assert report.ok, report.outcomes
    assert tenant.policies == {"Block": frozenset()}
    assert {u.policy for u in tenant.users.values()} == {"Block"}
    assert tenant.default_policy == "Block"
    assert [r.get("step") for r in audit.records][-3:] == ["restore_default", "release", None]


def test_a_write_refused_for_want_of_a_role_stops_the_user_phase() -> None:
    from reconciler.errors import AuthenticationError

    tenant = FakeTenant.with_users(40, policies={"Block": []})
    refusal = "Exchange refused Set-User (403): assign the Exchange Administrator role"

    def refuse(writes) -> None:  # type: ignore[no-untyped-def]
        raise AuthenticationError(refusal)

    tenant.before_user_batch = refuse
    report = run(make_plan(*[assign(i, "Block") for i in range(40)]), tenant, max_concurrency=1)
    assert report.denied == refusal
    failed = [o for o in report.outcomes if o.status == "failed"]
    skipped = [o for o in report.outcomes if o.status == "skipped"]
    assert len(failed) == 10  # the one batch that was sent
    assert len(skipped) == 30  # never sent
    assert {o.message for o in skipped} == {f"not sent: an earlier write was refused ({refusal})"}


def test_smtp_phases_run_after_the_default_and_before_the_users_batched_and_retried() -> None:
    tenant = FakeTenant.with_users(25, policy="Block", policies={"Block": ()})
    tenant.users = {
        uid: dataclasses.replace(u, smtp_auth="enabled") for uid, u in tenant.users.items()
    }
    tenant.throttle_batches = 1  # the first Set-CASMailbox group is throttled, then resent
    boxes = [
        MailboxSmtpChange(f"user{i}@contoso.com", f"u-{i}", "enabled", "organization", "all")
        for i in range(12)
    ]
    plan = make_plan(SmtpOrgChange(None, "disabled"), *boxes, assign(0, None, "Block"))
    audit = MemoryAudit()
    report = run(plan, tenant, audit=audit)
    assert report.ok and report.counts["applied"] == 14
    cmdlets = [w.cmdlet for w in tenant.writes]
    assert cmdlets == ["Set-TransportConfig", *["Set-CASMailbox"] * 12, "Set-User"]
    assert tenant.smtp_org == "disabled"
    assert {tenant.users[f"u-{i}"].smtp_auth for i in range(12)} == {"organization"}
    assert tenant.users["u-12"].smtp_auth == "enabled"  # not in the plan: untouched
    assert sorted(tenant.user_batches[:3]) == [2, 10, 10]  # throttled 10 sent again
    kinds = [r["change"]["kind"] for r in audit.records]
    assert kinds.count("mailbox_smtp_change") == 12 and kinds[0] == "smtp_org_change"


class _FailingAudit(MemoryAudit):
    """Takes `room` intent groups, then cannot write (a full disk)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def intend(self, entries):  # type: ignore[no-untyped-def]
        if self.room <= 0:
            raise OSError(28, "No space left on device")
        self.room -= 1
        super().intend(entries)


def test_every_write_has_its_intent_on_record_before_it_is_sent() -> None:
    tenant = FakeTenant.with_users(25, policy=None, policies={"Block": ()})
    audit = MemoryAudit()
    seen_at_send: list[set[str]] = []

    def check(writes) -> None:  # type: ignore[no-untyped-def]
        intents = {r["key"] for r in audit.intents}
        seen_at_send.append({f"user:{w.user_id}" for w in writes} - intents)

    tenant.before_user_batch = check
    plan = make_plan(PolicyCreate("New", frozenset()), *[assign(i, "Block") for i in range(25)])
    report = run(plan, tenant, audit=audit)
    assert report.ok
    assert seen_at_send and all(missing == set() for missing in seen_at_send)
    order = [r.get("record") for r in audit.log]
    assert order[0] == "intent" and order[1] == "outcome"  # the create: intent, then outcome
    assert len(audit.intents) == 26 and len(audit.records) == 26


def test_when_the_audit_log_cannot_take_an_intent_nothing_more_is_sent() -> None:
    tenant = FakeTenant.with_users(30, policy=None, policies={"Block": ()})
    plan = make_plan(*[assign(i, "Block") for i in range(30)])
    audit = _FailingAudit(room=1)  # the first batch of 10, then the disk is full
    report = run(plan, tenant, audit=audit, initial_concurrency=1, max_concurrency=1)
    assert len(tenant.writes) == 10  # only the batch whose intents were written
    assert report.audit_error == "No space left on device"
    assert report.counts == {"applied": 10, "failed": 0, "skipped": 20, "not_found": 0}
    skipped = {o.message for o in report.outcomes if o.status == "skipped"}
    assert skipped == {"not sent: the audit log could not be written (No space left on device)"}
