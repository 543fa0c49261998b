"""Progress displays: one line per phase without a terminal; a bar with retries on one."""

from __future__ import annotations

import io

from rich.console import Console

from reconciler.apply import execute_plan
from reconciler.apply.progress import PhaseLines, ProgressBar
from reconciler.model import Plan, PolicyCreate, UserChange
from tests.fakes import FakeTenant


def plan_of(users: int) -> Plan:
    return Plan(
        tenant="contoso.onmicrosoft.com",
        fingerprint="sha256:p",
        changes=(
            PolicyCreate("Devices", frozenset({"smtp"})),
            *[
                UserChange("user_assign", f"user{i}@contoso.com", f"u-{i}", None, "Devices", "r")
                for i in range(users)
            ],
        ),
    )


def test_phase_lines_name_each_phase_with_its_counts_and_retries() -> None:
    tenant = FakeTenant.with_users(25)
    tenant.retried_batches = 1
    stream = io.StringIO()
    execute_plan(plan_of(25), tenant, revoke_sessions=False, progress=PhaseLines(stream))
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "apply: policy creates: 1 applied",
        "apply: user assignments: 25 applied",
    ]
    assert lines[1].endswith(" s, 10 retries)")


def test_progress_bar_shows_done_total_and_retries() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    tenant = FakeTenant.with_users(30)
    with ProgressBar(console) as bar:
        execute_plan(plan_of(30), tenant, revoke_sessions=False, progress=bar)
    text = out.getvalue()
    assert "user assignments: 30 applied" in text
    assert "30/30" in text
    assert "0 retries" in text
