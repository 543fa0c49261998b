"""Partitioned Get-User (--read-concurrency): disjoint UPN-prefix filters plus their
complement, read side by side over HTTPS, give exactly the users and the plan of one cursor;
a service that refuses the filter falls back to one cursor."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import build_parser
from reconciler.desired import load_desired_state
from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.plan import make_plan, snapshot_needs
from reconciler.render import plan_to_json
from reconciler.tenant.connect import open_tenant
from reconciler.tenant.exo.tenant import user_partitions

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _snapshot(emu: Emulator, concurrency: str) -> object:
    env = {**emu.connection_env(), "AUTHPOLICY_READ_CONCURRENCY": concurrency}
    tenant = open_tenant(build_parser().parse_args(["report"]), env)
    desired = load_desired_state(ROOT / "policies.yaml")
    return tenant.read_snapshot(snapshot_needs(desired)), desired


def test_partitions_are_disjoint_and_complete_by_construction() -> None:
    filters = user_partitions()
    assert len(filters) == 37 and filters[-1].startswith("-not (")
    assert all(f"UserPrincipalName -like '{c}*'" in filters[-1] for c in "az09")


def test_partitioned_read_gives_the_single_cursor_plan(tmp_path: Path) -> None:
    import datetime as dt

    settings = EmulatorSettings(users=3000, seed=7, state_dir=tmp_path / "emu")
    with Emulator(settings) as emu:
        single, desired = _snapshot(emu, "1")
        emu.reset_stats()
        parted, _ = _snapshot(emu, "8")
        gets = emu.stats()["requests"]["Get-User"]
        assert parted.users == single.users  # type: ignore[attr-defined]
        day = dt.date(2026, 12, 27)
        assert plan_to_json(make_plan(desired, parted, day)) == plan_to_json(  # type: ignore[arg-type]
            make_plan(desired, single, day)  # type: ignore[arg-type]
        )
        # One request per page of each partition: at most ceil(users / 1000) + partitions.
        assert sum(gets.values()) <= -(-3000 // 1000) + 37
        emu.set_faults(user_filters="refused")
        fallback, _ = _snapshot(emu, "8")
        assert fallback.users == single.users  # type: ignore[attr-defined]


def test_partitioned_read_under_a_concurrency_cap_is_complete(tmp_path: Path) -> None:
    settings = EmulatorSettings(
        users=2500,
        seed=3,
        state_dir=tmp_path / "emu",
        max_concurrent_per_tenant=2,
        latency_base_ms=30,
    )
    with Emulator(settings) as emu:
        parted, _ = _snapshot(emu, "8")
        assert emu.stats()["concurrency_rejected"] > 0  # the cap was felt, and backed off
        emu.set_faults(max_concurrent_per_tenant=0)
        single, _ = _snapshot(emu, "1")
        assert parted.users == single.users  # type: ignore[attr-defined]
