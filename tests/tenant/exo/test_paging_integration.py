"""Paging a 50,000-user tenant: every user, one request per 1000, nothing kept twice."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.model import SnapshotNeeds
from tests.tenant.exo.conftest import SYSTEM_BUNDLE, connect, one_cursor

pytestmark = pytest.mark.integration

BIG = 50_000


@pytest.fixture(scope="module")
def big_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=BIG, seed=3, state_dir=Path(tmp_path_factory.mktemp("big")), save_on_exit=False
    )
    with Emulator(settings) as emu:
        yield emu


def test_reads_all_50000_users_in_ceil_n_over_1000_pages(
    big_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    tenant = connect(one_cursor(big_emulator.connection_env(app="reader")))
    pages: list[int] = []
    snapshot = tenant.read_snapshot(
        SnapshotNeeds(attributes=frozenset({"department"})),
        progress=lambda done, total: pages.append(done),
    )
    assert len(snapshot.users) == BIG
    assert len({u.id for u in snapshot.users}) == BIG
    assert pages == [min(BIG, 1000 * n) for n in range(1, math.ceil(BIG / 1000) + 1)]
    stats = big_emulator.stats()
    assert stats["requests"]["Get-User"] == {"200": math.ceil(BIG / 1000)}
    # + the one 307 of redirect_to_backend: the client follows it once and keeps the backend.
    assert stats["requests"]["-"] == {"307": 1}
    assert stats["requests_total"] == math.ceil(BIG / 1000) + 3
    assert tenant.client.stats.pages == math.ceil(BIG / 1000) + 2


def test_partitioned_read_of_50000_users_is_the_same_set_in_few_more_requests(
    big_emulator: Emulator,
) -> None:
    big_emulator.reset_stats()
    one = connect(one_cursor(big_emulator.connection_env(app="reader")))
    alone = one.read_snapshot(SnapshotNeeds(attributes=frozenset({"department"})))
    big_emulator.reset_stats()
    tenant = connect(big_emulator.connection_env(app="reader"))  # the default: partitioned
    progress: list[int] = []
    snapshot = tenant.read_snapshot(
        SnapshotNeeds(attributes=frozenset({"department"})),
        progress=lambda done, total: progress.append(done),
    )
    assert snapshot.users == alone.users  # the same users, in the same order
    assert progress == sorted(progress) and progress[-1] == BIG
    partitions = tenant.client.stats.partitions
    assert partitions > 1
    served = big_emulator.stats()["requests"]["Get-User"]["200"]
    # Each partition's last page is at most one more than its share of whole pages.
    assert served <= math.ceil(BIG / 1000) + partitions
