"""Reading a snapshot from the emulator: paging, groups, SMTP settings, faults, completeness."""

from __future__ import annotations

import math

import pytest

from reconciler.emulator import Emulator
from reconciler.errors import TenantError, TenantNotFoundError
from reconciler.model import PROTOCOL_NAMES, SnapshotNeeds
from reconciler.tenant.exo.errors import ExoProtocolError
from tests.tenant.exo.conftest import USERS, connect, one_cursor

pytestmark = pytest.mark.integration


def test_snapshot_contents(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    needs = SnapshotNeeds(
        attributes=frozenset({"department", "country"}),
        groups=frozenset({"SMTP Exceptions", "Finance Team"}),
        smtp_org=True,
        mailboxes=True,
    )
    snapshot = tenant.read_snapshot(needs)
    state = emu.dump_state()
    assert snapshot.tenant == emu.tenant_id
    assert {p.name for p in snapshot.policies} == {
        "Block Basic Auth",
        "SMTP relay devices",
        "Legacy 2018 Policy",
    }
    block = snapshot.policy("Block Basic Auth")
    assert block is not None and block.allow == frozenset({"imap", "smtp"})
    assert snapshot.default_policy == "Block Basic Auth"
    assert len(snapshot.users) == USERS == len(state["users"])
    assert len({u.id for u in snapshot.users}) == USERS
    # The newest ~5% of mailboxes, and the mail users and guests (set_user_refuses).
    no_direct = [
        u
        for u in snapshot.users
        if u.policy is None and u.recipient_type not in ("MailUser", "GuestMailUser")
    ]
    assert 0 < len(no_direct) < USERS // 10
    ann = next(u for u in snapshot.users if u.upn == "breakglass@contoso.com")
    assert ann.policy == "Block Basic Auth"
    assert all(
        u.department is not None for u in snapshot.users if u.recipient_type == "UserMailbox"
    )
    assert all(u.title is None for u in snapshot.users)  # not asked for, not read
    # Never set by the admin: the default-off is not shown (smtp_default_off=hidden).
    assert snapshot.mailboxes_read and snapshot.smtp_org is None and snapshot.smtp_org_read
    scanners = [u for u in snapshot.users if u.upn.startswith("scanner-")]
    assert scanners and all(u.smtp_auth == "enabled" for u in scanners)
    assert set(snapshot.groups) == {"smtp exceptions", "finance team"}
    assert snapshot.groups["smtp exceptions"]  # nested "Line-of-business apps" expanded
    assert snapshot.groups["finance team"]  # the Finance Team <-> Finance Approvers cycle ends
    ids = {u.id for u in snapshot.users}
    assert snapshot.groups["smtp exceptions"] <= ids
    for policy in snapshot.policies:
        assert policy.allow <= set(PROTOCOL_NAMES)


def test_nested_group_members_are_included(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    snapshot = tenant.read_snapshot(
        SnapshotNeeds(groups=frozenset({"SMTP Exceptions", "Line-of-business apps"}))
    )
    outer, inner = snapshot.groups["smtp exceptions"], snapshot.groups["line-of-business apps"]
    assert inner and inner < outer


def test_missing_group_is_a_clear_error(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    with pytest.raises(TenantNotFoundError) as err:
        tenant.read_snapshot(SnapshotNeeds(groups=frozenset({"No Such Group"})))
    assert str(err.value) == (
        f"the group 'No Such Group' named in the rules (member_of) does not exist in tenant "
        f"{emu.tenant_id}; fix the name in policies.yaml or create the group"
    )


def test_request_count_without_groups(emu: Emulator) -> None:
    tenant = connect(one_cursor(emu.connection_env(app="reader")))
    tenant.read_snapshot(SnapshotNeeds(attributes=frozenset({"city"})))
    stats = emu.stats()
    # + 1: the first call's 307 to the backend host, followed once and kept for the rest.
    assert stats["requests"]["-"] == {"307": 1}
    assert stats["requests_total"] == math.ceil(USERS / 1000) + 3
    assert tenant.client.stats.requests == math.ceil(USERS / 1000) + 3
    assert tenant.client.stats.redirects == 1


def test_policies_and_default_without_users_cost_two_requests(emu: Emulator) -> None:
    # What apply's verification reads: no user page, whatever the tenant's size.
    tenant = connect(emu.connection_env(app="reader"))
    snapshot = tenant.read_snapshot(SnapshotNeeds(users=False))
    assert emu.stats()["requests_total"] == 2 + 1  # + the one redirect of the first call
    assert snapshot.users == () and snapshot.default_policy == "Block Basic Auth"
    assert {p.name for p in snapshot.policies} == {
        "Block Basic Auth",
        "SMTP relay devices",
        "Legacy 2018 Policy",
    }


def test_progress_reports_users_as_pages_arrive(emu: Emulator) -> None:
    seen: list[tuple[int, int | None]] = []
    connect(one_cursor(emu.connection_env(app="reader"))).read_snapshot(
        SnapshotNeeds(), progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1000, None), (2000, None), (2500, None)]


def test_429_storm_is_ridden_out(emu: Emulator) -> None:
    emu.set_faults(throttle_budget=2, throttle_window_seconds=0.2)
    seen: list[float | None] = []
    tenant = connect(emu.connection_env(app="reader"), on_throttle=seen.append)
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    assert len(snapshot.users) == USERS
    assert emu.stats()["throttled"] >= 1
    assert tenant.client.stats.throttled == emu.stats()["throttled"] == len(seen)
    assert all(s is not None and 0 < s <= 0.2 for s in seen)  # Retry-After, in seconds


def test_endless_throttling_ends_in_a_clear_error(emu: Emulator) -> None:
    emu.set_faults(throttle_budget=1, throttle_window_seconds=30)
    tenant = connect(emu.connection_env(app="reader"))
    tenant.client.retry.max_retry_after = 5
    with pytest.raises(TenantError) as err:
        tenant.read_snapshot(SnapshotNeeds())
    assert str(err.value).startswith("Exchange throttled Get-")
    assert "(429; asked to wait " in str(err.value)


@pytest.mark.parametrize("cursors", ["one", "partitioned"])
def test_503s_and_504s_are_retried(emu: Emulator, cursors: str) -> None:
    emu.set_faults(error_503_rate=0.3, error_504_rate=0.2, fault_seed=11)
    # At a 50% fault rate some of a partitioned read's ~40 requests run out of retries: the
    # partition is read again (one page here), not the whole read.
    env = emu.connection_env(app="reader")
    tenant = connect(one_cursor(env) if cursors == "one" else env)
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    assert len(snapshot.users) == USERS
    assert len({u.id for u in snapshot.users}) == USERS
    assert tenant.client.stats.retries >= 1


@pytest.mark.parametrize("fault", ["non_json", "truncated_json", "missing_value"])
def test_malformed_pages_are_read_again_not_skipped(emu: Emulator, fault: str) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    tenant.facts()
    emu.set_faults(one_shot=[fault])
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    assert len(snapshot.users) == USERS
    assert emu.stats()["faults_injected"] == {fault: 1}


def test_foreign_next_link_is_refused(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    tenant.facts()
    emu.set_faults(one_shot=["foreign_next_link"])
    with pytest.raises(ExoProtocolError) as err:
        tenant.read_snapshot(SnapshotNeeds())
    assert str(err.value).startswith(
        "refusing to follow @odata.nextLink to https://attacker.example:443"
    )
    assert "the token is never sent elsewhere" in str(err.value)


def test_cursor_expiry_restarts_the_whole_read(emu: Emulator) -> None:
    tenant = connect(one_cursor(emu.connection_env(app="reader")))
    calls: list[int] = []

    def progress(done: int, total: int | None) -> None:
        calls.append(done)
        # Expire cursors after the first page of the first read; restore on the re-read.
        emu.set_faults(cursor_expiry_seconds=0.0 if len(calls) == 1 else 1800.0)

    snapshot = tenant.read_snapshot(SnapshotNeeds(), progress=progress)
    assert len(snapshot.users) == USERS
    assert calls == [1000, 1000, 2000, 2500]


def test_cursor_that_always_expires_raises_instead_of_a_partial_snapshot(emu: Emulator) -> None:
    emu.set_faults(cursor_expiry_seconds=0.0)
    tenant = connect(one_cursor(emu.connection_env(app="reader")))
    with pytest.raises(TenantError) as err:
        tenant.read_snapshot(SnapshotNeeds())
    assert str(err.value).startswith(
        "reading users failed: Exchange refused the next page 3 time(s)"
    )
    assert "nothing was changed, try again" in str(err.value)
