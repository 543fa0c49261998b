"""Sizes, the emulator's latency model and the request budget: every knob of a bench run.

The latency model is a MODEL, not a measurement of Microsoft: Exchange Online answers a Set-User
in roughly 100-300 ms and a 1,000-object Get-User page in roughly 1-2 s. The emulator here is set
to a tenth of the mid-points (Set-User 20 ms, a 1,000-object page 20 + 1000 x 0.13 = 150 ms) so
the slow baselines finish on this machine while the page/Set-User proportion (7.5x) stays close
to the real one; ratios ours/baseline depend on that proportion, absolute times do not transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
MAILBOXES_YAML = BENCH_DIR / "policies" / "mailboxes.yaml"
MAILBOXES_SMTP_YAML = BENCH_DIR / "policies" / "mailboxes_smtp.yaml"
MAILBOXES_EVIDENCE_YAML = BENCH_DIR / "policies" / "mailboxes_evidence.yaml"
TWENTY_RULES_YAML = BENCH_DIR / "policies" / "twenty_rules.yaml"
SEED = 7


@dataclass(frozen=True)
class LatencyModel:
    """Emulator settings: delay of every admin API request (a floor; processing overlaps)."""

    base_ms: float = 20.0
    per_object_ms: float = 0.13

    def settings(self) -> dict[str, Any]:
        """The EmulatorSettings fields this model sets."""
        return {"latency_base_ms": self.base_ms, "latency_per_object_ms": self.per_object_ms}

    def describe(self) -> str:
        page = self.base_ms + 1000 * self.per_object_ms
        return (
            f"{self.base_ms:g} ms per request + {self.per_object_ms:g} ms per object returned "
            f"(Set-User {self.base_ms:g} ms, a 1,000-object page {page:g} ms)"
        )


NO_LATENCY = LatencyModel(0.0, 0.0)


@dataclass(frozen=True)
class BenchConfig:
    """What one `python -m bench` run measures."""

    runs: int = 5
    quick: bool = False
    latency: LatencyModel = field(default_factory=LatencyModel)
    # Case 1: no-op plan sizes.
    noop_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    # Case 2: drift at this size; the baselines run for real on a sample and are projected.
    drift_users: int = 100_000
    drift_fraction: float = 0.01
    naive_sample: int = 400  # Set-User calls of the naive loop measured per run
    checker_sample: int = 600  # users the per-user checker handles per run
    # Case 3: user changes against a request budget (fixed window, per app).
    throughput_users: int = 30_000
    throughput_changes: int = 20_000
    budget_per_window: int = 300
    budget_window_s: float = 1.0
    # At 300 requests/s one run takes ~75 s per mode; fewer runs keep `all` near 20 minutes.
    throughput_max_runs: int = 3
    # Issue 5: the planner at this size against 20 rules.
    planner_users: int = 100_000
    # Issue 14: the no-op plan with and without SMTP AUTH managed, side by side.
    smtp_users: int = 100_000
    # Issue 15: the no-op plan with and without sign-in evidence, this many legacy sign-ins.
    evidence_users: int = 100_000
    evidence_events: int = 100_000
    # Issue 16: a fleet of this many tenants of this size, under a real-service latency model
    # (1 s per page of 1,000, 0.2 s per other request), the emulator in its own process.
    fleet_tenants: int = 50
    fleet_users: int = 2_000
    fleet_max_runs: int = 2
    # Issue 18: the no-op plan on one cursor and on partitioned cursors, side by side, at
    # each of these sizes.
    partition_users: tuple[int, ...] = (100_000, 300_000)
    partition_concurrency: int = 8
    # Case 4: emulator capacity, seconds per measurement and client connections.
    capacity_seconds: float = 3.0
    capacity_clients: tuple[int, ...] = (1, 4)

    @classmethod
    def make(cls, *, quick: bool, runs: int) -> BenchConfig:
        """The full configuration, or the small `--quick` one."""
        if not quick:
            return cls(runs=runs)
        return cls(
            runs=runs,
            quick=True,
            noop_sizes=(500, 2_000),
            drift_users=5_000,
            naive_sample=100,
            checker_sample=200,
            throughput_users=3_000,
            throughput_changes=1_000,
            budget_per_window=150,
            planner_users=5_000,
            smtp_users=5_000,
            evidence_users=5_000,
            evidence_events=10_000,
            fleet_tenants=10,
            fleet_users=500,
            partition_users=(5_000,),
            capacity_seconds=1.0,
        )


def tiny_config() -> BenchConfig:
    """The smallest sizes that still exercise every code path (tests/bench)."""
    return BenchConfig(
        runs=1,
        quick=True,
        latency=LatencyModel(1.0, 0.01),
        noop_sizes=(300,),
        drift_users=400,
        drift_fraction=0.02,
        naive_sample=20,
        checker_sample=40,
        throughput_users=400,
        throughput_changes=100,
        budget_per_window=100,
        budget_window_s=0.5,
        planner_users=400,
        smtp_users=300,
        evidence_users=300,
        evidence_events=2_000,
        fleet_tenants=4,
        fleet_users=100,
        fleet_max_runs=1,
        partition_users=(300,),
        capacity_seconds=0.3,
        capacity_clients=(1, 2),
    )
