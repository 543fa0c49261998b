"""Partitioned Get-User (--read-concurrency) over HTTPS against the emulator: a probe page,
UPN-prefix partitions chosen from it (split again when one turns out large), read side by
side, give exactly the users and the plan of one cursor, in about ceil(users / 1000) +
partitions requests, under every page order, a concurrency cap, expiring cursors and a
service that refuses the filter; a partition whose retries run out is read again, and one
that keeps failing fails the read."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import build_parser
from reconciler.desired import load_desired_state
from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.errors import TenantError
from reconciler.model import SnapshotNeeds
from reconciler.plan import make_plan, snapshot_needs
from reconciler.render import plan_to_json
from reconciler.tenant.connect import open_tenant
from reconciler.tenant.exo.errors import ExoTransientError
from reconciler.tenant.exo.partitions import COMMON, Atom, Partition
from reconciler.tenant.exo.retry import RetryPolicy
from reconciler.tenant.exo.snapshot import user_select
from reconciler.tenant.exo.user_reads import FIRST_SPLIT, ReadPace, UserSet, _run
from reconciler.tenant.exo.user_reads import USERS as USERS_LISTING

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
USERS = 6000


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # Get-CASMailbox -Filter served (the default refuses it): the mailboxes are partitioned
    # here too; test_mailboxes_on_one_cursor_when_their_filter_is_refused covers the default.
    settings = EmulatorSettings(
        users=USERS, seed=7, state_dir=tmp_path_factory.mktemp("emu"), mailbox_filters="supported"
    )
    with Emulator(settings) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(emu: Emulator) -> Iterator[None]:
    yield
    emu.set_faults(
        user_order="stored",
        user_filters="supported",
        mailbox_filters="supported",
        max_concurrent_per_tenant=0,
        latency_base_ms=0.0,
        cursor_expiry_seconds=1800.0,
        one_shot=[],
    )


def _read(
    emu: Emulator,
    concurrency: int,
    needs: SnapshotNeeds | None = None,
    *,
    page_size: int = 1000,
    retry: RetryPolicy | None = None,
    restarts: int | None = None,
    **options: Any,
) -> tuple[Any, Any, Any]:
    """(snapshot, desired, tenant) read on `concurrency` cursors, `page_size` users a page
    (`retry`: the client's retries; `restarts`: a partition's)."""
    env = {**emu.connection_env(), "AUTHPOLICY_READ_CONCURRENCY": str(concurrency)}
    args = build_parser().parse_args(["report"])
    tenant = open_tenant(args, env, page_size=page_size, retry=retry)
    if restarts is not None:
        tenant.max_read_restarts = restarts
    desired = load_desired_state(ROOT / "policies.yaml")
    snapshot = tenant.read_snapshot(needs or snapshot_needs(desired), **options)
    return snapshot, desired, tenant


def _requests(emu: Emulator, cmdlet: str) -> int:
    return sum(emu.stats()["requests"][cmdlet].values())


def _get_user_requests(emu: Emulator) -> int:
    return _requests(emu, "Get-User")


@pytest.fixture(scope="module")
def single(emu: Emulator) -> tuple[Any, Any]:
    snapshot, desired, _ = _read(emu, 1)
    assert len(snapshot.users) > 5000
    return snapshot, desired


def _assert_same_read(snapshot: Any, desired: Any, single: Any) -> None:
    """The mailboxes read and joined, the users and unmatched mailboxes of the single cursor,
    and the same plan's bytes."""
    assert snapshot.mailboxes_read and snapshot.users == single.users
    assert snapshot.mailboxes_without_user == single.mailboxes_without_user
    day = dt.date(2026, 12, 27)
    assert plan_to_json(make_plan(desired, snapshot, day)) == plan_to_json(
        make_plan(desired, single, day)
    )


@pytest.mark.parametrize("order", ["stored", "upn"])
def test_partitioned_read_gives_the_single_cursor_plan(
    emu: Emulator, single: tuple[Any, Any], order: str
) -> None:
    emu.set_faults(user_order=order)
    emu.reset_stats()
    parted, desired, tenant = _read(emu, 8)
    # policies.yaml manages SMTP AUTH: the mailboxes are read too, partitioned by Name beside
    # the users, and joined to them (each user's smtp_auth is compared here).
    _assert_same_read(parted, desired, single[0])
    partitions = tenant.client.stats.partitions
    assert partitions > 8  # the probe, then at least 2 x 8 partitions
    # One request per page of each filter issued (the probe's and a dropped first page's
    # included): at most ceil(users / 1000) + partitions.
    pages = -(-USERS // 1000)
    mailbox_requests = _requests(emu, "Get-CASMailbox")
    assert mailbox_requests > pages  # partitioned, not one cursor's pages
    assert _get_user_requests(emu) + mailbox_requests <= 2 * pages + partitions


def test_a_tenant_of_one_page_is_read_in_one_request(tmp_path: Path) -> None:
    settings = EmulatorSettings(users=300, seed=2, state_dir=tmp_path / "emu")
    with Emulator(settings) as small:
        snapshot, _, tenant = _read(small, 8)
        assert len(snapshot.users) > 250 and snapshot.mailboxes_read
        # One request each for the users and the mailboxes: the probes held everything.
        assert _get_user_requests(small) == 1 == _requests(small, "Get-CASMailbox")
        assert tenant.client.stats.partitions == 2
        assert gc.isenabled()  # the collector paused for the read runs again after it


def test_a_refused_filter_falls_back_to_one_cursor(emu: Emulator, single: tuple[Any, Any]) -> None:
    emu.set_faults(user_filters="refused", mailbox_filters="refused")
    snapshot, _, tenant = _read(emu, 8)
    assert snapshot.users == single[0].users
    assert tenant.client.stats.partitions == 0  # read on the single cursor after the refusal


def test_mailboxes_on_one_cursor_when_their_filter_is_refused(
    emu: Emulator, single: tuple[Any, Any]
) -> None:
    # The emulator's default: Get-CASMailbox -Filter refused (only Get-User's is documented).
    emu.set_faults(mailbox_filters="refused")
    emu.reset_stats()
    snapshot, desired, tenant = _read(emu, 8)
    _assert_same_read(snapshot, desired, single[0])
    pages = -(-USERS // 1000)
    # The users partitioned, the mailboxes on one cursor: the unfiltered probe page, the
    # filters sent at once (each refused), then one cursor's pages.
    assert _get_user_requests(emu) > pages
    refused = emu.stats()["requests"]["Get-CASMailbox"].get("400", 0)
    assert 1 <= refused <= 8
    assert _requests(emu, "Get-CASMailbox") <= 1 + refused + pages
    assert tenant.client.stats.partitions > 8  # the users' (the mailboxes' add none)


def test_a_concurrency_cap_is_felt_and_backed_off(emu: Emulator, single: tuple[Any, Any]) -> None:
    emu.set_faults(max_concurrent_per_tenant=2, latency_base_ms=20.0)
    emu.reset_stats()
    snapshot, _, _ = _read(emu, 8)
    assert emu.stats()["concurrency_rejected"] > 0
    assert snapshot.users == single[0].users


def test_an_expired_partition_cursor_reads_that_partition_again(
    emu: Emulator, single: tuple[Any, Any]
) -> None:
    calls: list[int] = []

    def progress(done: int, total: int | None) -> None:
        calls.append(done)
        # Cursors expire after the second page anyone reads, and work again after the fourth
        # (two cursors, eight partitions of about 750 users: three pages of 250 each).
        emu.set_faults(cursor_expiry_seconds=0.0 if 2 <= len(calls) < 4 else 1800.0)

    snapshot, _, tenant = _read(emu, 2, SnapshotNeeds(), page_size=250, progress=progress)
    assert [(u.id, u.upn, u.policy) for u in snapshot.users] == [
        (u.id, u.upn, u.policy) for u in single[0].users
    ]
    assert tenant.client.stats.read_restarts >= 1
    assert calls == sorted(calls) and calls[-1] == len(single[0].users)  # unique users, rising


def test_a_partition_that_keeps_failing_fails_the_read(emu: Emulator) -> None:
    emu.set_faults(cursor_expiry_seconds=0.0)
    with pytest.raises(TenantError) as err:
        _read(emu, 2, SnapshotNeeds(), page_size=250)  # eight partitions of three pages
    assert str(err.value).startswith("reading users failed: Exchange refused the next page 3")


@pytest.mark.parametrize("order", ["stored", "upn"])
def test_a_read_whose_partitions_may_split_again_gives_the_same_users(
    emu: Emulator, single: tuple[Any, Any], order: str
) -> None:
    # Four cursors; pages of 100. The probe splits into 16 partitions (stored order: a fair
    # sample) or 37 (name order: the sample says nothing, so one per first character); the
    # last ones start while cursors are free, so their first page (with more to come) splits
    # them by its names.
    first = {"stored": FIRST_SPLIT * 4, "upn": len(COMMON) + 1}[order]
    emu.set_faults(user_order=order)
    emu.reset_stats()
    snapshot, _, tenant = _read(emu, 4, SnapshotNeeds(), page_size=100)
    assert [(u.id, u.upn, u.policy) for u in snapshot.users] == [
        (u.id, u.upn, u.policy) for u in single[0].users
    ]
    partitions = tenant.client.stats.partitions
    # Whether a cursor is free when a partition's first page arrives is timing: a split is
    # allowed here, not required (the same users either way is what is asserted).
    assert partitions >= 1 + first
    assert _get_user_requests(emu) <= -(-USERS // 100) + partitions


def test_a_partition_whose_retries_run_out_is_read_again(
    emu: Emulator, single: tuple[Any, Any]
) -> None:
    # No retries in the client: each 503 queued once the probe page is in fails a partition's
    # request outright, and that partition (a few pages) is read again from its first page.
    queued: list[bool] = []

    def progress(done: int, total: int | None) -> None:
        if not queued:
            queued.append(True)
            emu.set_faults(one_shot=["error_503"] * 3)

    # Users only: no Get-CASMailbox read beside it for a queued 503 to land on.
    snapshot, _, tenant = _read(
        emu, 4, SnapshotNeeds(), progress=progress, retry=RetryPolicy(max_attempts=1), restarts=3
    )
    assert [(u.id, u.upn, u.policy) for u in snapshot.users] == [
        (u.id, u.upn, u.policy) for u in single[0].users
    ]
    assert emu.stats()["faults_injected"] == {"error_503": 3}
    assert tenant.client.stats.read_restarts == 3


def test_a_partition_failing_past_its_restarts_fails_the_read(emu: Emulator) -> None:
    def progress(done: int, total: int | None) -> None:
        emu.set_faults(error_503_rate=1.0)  # from the probe page on, every request fails

    try:
        with pytest.raises(ExoTransientError) as err:
            _read(emu, 4, SnapshotNeeds(), retry=RetryPolicy(max_attempts=1), progress=progress)
    finally:
        emu.set_faults(error_503_rate=0.0)
    assert "503" in str(err.value)
    # Each partition that started was read 1 + 2 (restarts) times before the read failed.
    assert emu.stats()["faults_injected"]["error_503"] >= 3


def test_a_partition_whose_first_page_says_more_follow_is_split_into_free_cursors(
    emu: Emulator,
) -> None:
    # Deterministic: one partition ('a*', several pages of 100) on 4 cursors, so 3 are free
    # when its first page arrives: it is split into 4 pieces by that page's names, its cursor
    # dropped, and the pieces together read exactly the users whose UPN starts with 'a'.
    emu.set_faults(user_order="upn")
    env = {**emu.connection_env(), "AUTHPOLICY_READ_CONCURRENCY": "4"}
    tenant = open_tenant(build_parser().parse_args(["report"]), env, page_size=100)
    expected = {
        u["ExternalDirectoryObjectId"].lower()
        for u in emu.dump_state()["users"]
        if u["UserPrincipalName"].lower().startswith("a")
    }
    assert len(expected) > 200  # more than two pages of 100
    found = UserSet((), {})
    emu.reset_stats()
    with ReadPace(tenant.client, 4) as pace:
        issued = _run(
            tenant.client,
            USERS_LISTING,
            user_select(frozenset()),
            found,
            [Partition((Atom("a"),))],
            ways=4,
            restarts=2,
            pace=pace,
        )
    assert issued == 1 + 4  # the partition, then the 4 pieces it was split into
    assert set(found.users) == expected
    # The dropped first page is read again by the pieces: one page more than the whole
    # pieces' pages, at most one partial page each.
    assert _get_user_requests(emu) <= 1 + -(-len(expected) // 100) + 4
