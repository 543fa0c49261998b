"""Apply under faults injected by the emulator, over real HTTPS.

Each case ends the same way (harness.assert_converged_within_plan): a new plan shows zero
changes, the emulator logged exactly one state-changing write per planned change and none
other, and the tenant differs from its state at plan time in exactly the planned objects.
Cases already proven elsewhere are listed in docs/reliability.md rather than repeated here.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli
from reconciler.apply import MemoryAudit, execute_plan
from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.model import UserChange
from reconciler.tenant.connect import open_tenant
from reconciler.tenant.exo.retry import RetryPolicy
from reconciler.tenant.exo.tenant import ExoTenant
from tests.reliability.harness import (
    assert_converged_within_plan,
    plan_now,
    planned_keys,
    state_diff_keys,
    upn_index,
    write_config,
    writes_outside_plan,
)

pytestmark = pytest.mark.integration

NO_FAULTS: dict[str, Any] = {
    "throttle_budget": 0,
    "max_concurrent_per_tenant": 0,
    "error_503_rate": 0.0,
    "error_504_rate": 0.0,
    "reset_before_write_rate": 0.0,
    "reset_after_write_rate": 0.0,
    "latency_base_ms": 0.0,
    "token_early_expiry_seconds": None,
    "revoked_apps": [],
    "cursor_expiry_seconds": 1800.0,
}


def apply_cli(capsys: pytest.CaptureFixture[str], config: Path, *extra: str) -> tuple[int, str]:
    """`authpolicy apply -c CONFIG --auto-approve EXTRA` in-process; (exit code, out + err)."""
    capsys.readouterr()
    code = cli.main(["apply", "-c", str(config), "--auto-approve", *extra])
    out, err = capsys.readouterr()
    return code, out + err


def note(case: str, **figures: Any) -> None:
    """One line for docs/reliability.md (stdout is captured by capsys; stderr is not with -s)."""
    parts = " ".join(f"{k}={v}" for k, v in figures.items())
    sys.__stderr__.write(f"\nRELIABILITY {case}: {parts}\n")


def when_writes_reach(emu: Emulator, count: int, action: Callable[[], None]) -> threading.Thread:
    """Run `action` once the emulator has seen `count` state-changing writes (a watcher thread)."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while emu.stats()["writes_changed_state"] < count and time.monotonic() < deadline:
            time.sleep(0.005)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def prepare(emu: Emulator, config: Path) -> tuple[Any, dict[str, Any]]:
    """(plan, tenant state) now, with the statistics zeroed."""
    before = emu.dump_state()
    plan = plan_now(emu.connection_env("writer"), config)
    assert len(plan.changes) > 250
    emu.reset_stats()
    return plan, before


# --------------------------------------------------------------------------- throttling


@pytest.mark.parametrize(
    "window",
    [
        0.1,
        pytest.param(1.0, marks=pytest.mark.reliability),
        pytest.param(5.0, marks=pytest.mark.reliability),
    ],
    ids=["retry-after-0.1s", "retry-after-1s", "retry-after-5s"],
)
def test_429_bursts_with_retry_after_converge(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str], window: float
) -> None:
    plan, before = prepare(connected, config)
    # The budget runs out within each window; the 429s carry Retry-After = the rest of it.
    connected.set_faults(throttle_budget=40, throttle_window_seconds=window)
    code, output = apply_cli(capsys, config)
    assert code == 0, output
    stats = connected.stats()
    assert stats["throttled"] > 0
    assert stats["writes_noop"] == 0
    note(f"429 window={window}", throttled=stats["throttled"], writes=stats["writes_changed_state"])
    connected.set_faults(**NO_FAULTS)
    assert_converged_within_plan(connected, config, plan, before)


def test_the_concurrency_error_is_ridden_out(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, before = prepare(connected, config)
    # Two requests at a time per tenant, 40 ms each; apply starts with 4 batches in flight.
    connected.set_faults(max_concurrent_per_tenant=2, latency_base_ms=40)
    code, output = apply_cli(capsys, config)
    assert code == 0, output
    assert connected.stats()["concurrency_rejected"] > 0
    note("concurrency", rejected=connected.stats()["concurrency_rejected"])
    connected.set_faults(**NO_FAULTS)
    assert_converged_within_plan(connected, config, plan, before)


# --------------------------------------------------------------------------- 503 / 504


@pytest.mark.parametrize(
    "rate", [0.1, pytest.param(0.3, marks=pytest.mark.reliability)], ids=["10pct", "30pct"]
)
def test_503_and_504_converge(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str], rate: float
) -> None:
    plan, before = prepare(connected, config)
    connected.set_faults(error_503_rate=rate / 2, error_504_rate=rate / 2, fault_seed=3)
    code, output = apply_cli(capsys, config)
    assert code == 0, output
    injected = connected.stats()["faults_injected"]
    assert injected.get("error_503", 0) > 0 and injected.get("error_504", 0) > 0
    note(f"503/504 rate={rate}", injected=dict(injected))
    connected.set_faults(**NO_FAULTS)
    assert_converged_within_plan(connected, config, plan, before)


# --------------------------------------------------------------------------- resets


def _fast_retry() -> RetryPolicy:
    return RetryPolicy(base_delay=0.01, max_delay=0.05, deadline=120.0)


@pytest.mark.parametrize("fault", ["reset_before_write", "reset_after_write"])
def test_connection_resets_on_single_writes_converge(
    emu: Emulator, config: Path, fault: str
) -> None:
    # One write per request (no $batch: the emulator injects resets on single InvokeCommand
    # writes) so every change, users included, is exposed to the reset.
    env = emu.connection_env("writer")
    plan, before = prepare(emu, config)
    emu.set_faults(**{f"{fault}_rate": 0.1, "fault_seed": 9})
    tenant = open_tenant(argparse.Namespace(), env, use_batch=False, retry=_fast_retry())
    # With the default 4 sends a write fails when 4 resets in a row hit it: 0.1**4 per write,
    # ~3% per run over ~300 writes, and the dice are shared by concurrent workers so the seed
    # does not fix which write gets them. 8 sends make that 1e-8 per write: this test is about
    # each ambiguous send being re-read before it is re-sent, not about running out of sends.
    assert isinstance(tenant, ExoTenant)
    tenant.max_write_rounds = 8
    report = execute_plan(plan, tenant, revoke_sessions=True, audit=MemoryAudit())
    assert report.counts["applied"] == len(plan.changes), report.counts
    stats = emu.stats()
    assert stats["faults_injected"][fault] >= 20
    note(fault, injected=stats["faults_injected"][fault], noop=stats["writes_noop"])
    if fault == "reset_after_write":
        # The write was committed before the reset: the client re-reads and must not resend a
        # change (a resent one would at most be a no-op, and here there is none).
        assert stats["writes_noop"] == 0
    emu.set_faults(**NO_FAULTS)
    assert_converged_within_plan(emu, config, plan, before)


def test_resets_on_the_cli_path_converge(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI sends users in $batch; policy, default and read requests get the resets.
    plan, before = prepare(connected, config)
    connected.set_faults(reset_before_write_rate=0.5, reset_after_write_rate=0.5, fault_seed=2)
    code, output = apply_cli(capsys, config)
    assert code == 0, output
    assert sum(connected.stats()["faults_injected"].values()) >= 2
    note("resets on CLI path", injected=dict(connected.stats()["faults_injected"]))
    connected.set_faults(**NO_FAULTS)
    assert_converged_within_plan(connected, config, plan, before)


# --------------------------------------------------------------------------- credentials


def test_tokens_expiring_mid_apply_are_renewed(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, before = prepare(connected, config)
    # Exchange refuses tokens 1.5 s after issue although exp says an hour; with 150 ms per
    # request and two batches at a time the apply outlives several tokens.
    connected.set_faults(token_early_expiry_seconds=1.5, latency_base_ms=150)
    code, output = apply_cli(capsys, config, "--max-concurrency", "2")
    assert code == 0, output
    stats = connected.stats()
    assert stats["requests"]["-"]["401"] >= 1  # an expired token was refused, then renewed
    assert int(stats["token_requests"]["200"]) >= 2
    note("token expiry", refused_401=stats["requests"]["-"]["401"], tokens=stats["token_requests"])
    connected.set_faults(**NO_FAULTS)
    assert_converged_within_plan(connected, config, plan, before)


def test_a_credential_revoked_mid_apply_stops_with_a_clear_error_and_a_rerun_converges(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan, before = prepare(connected, config)
    connected.set_faults(latency_base_ms=20)
    watcher = when_writes_reach(
        connected, 60, lambda: connected.set_faults(revoked_apps=["writer"])
    )
    audit = tmp_path / "audit.jsonl"
    code, output = apply_cli(capsys, config, "--max-concurrency", "2", "--audit-log", str(audit))
    watcher.join()
    assert code == 1, output
    assert "The application's credentials were revoked" in output or "AADSTS7000222" in output
    assert "Traceback" not in output
    written = connected.stats()["writes_changed_state"]
    assert 60 <= written < len(plan.changes)
    last_error = next(line for line in output.splitlines() if line.startswith("error: "))
    note("revoked", written_before_stop=written, error=repr(last_error))

    connected.set_faults(**NO_FAULTS)
    code, output = apply_cli(capsys, config)
    assert code == 0, output
    assert_converged_within_plan(connected, config, plan, before)


# --------------------------------------------------------------------------- paging


def test_a_cursor_that_keeps_expiring_fails_plan_and_apply_without_a_partial_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than one page of users (1,000 a page), and every nextLink already expired.
    settings = EmulatorSettings(users=1500, seed=7, state_dir=tmp_path / "emu", save_on_exit=False)
    with Emulator(settings) as emu:
        for key, value in emu.connection_env("writer").items():
            monkeypatch.setenv(key, value)
        config = write_config(tmp_path)
        # The mailboxes are partitioned by Name too (served here: the default refuses
        # Get-CASMailbox -Filter, and one cursor would need the expired nextLink).
        emu.set_faults(cursor_expiry_seconds=0.0, mailbox_filters="supported")
        out_file = tmp_path / "plan.json"
        # Partitioned (the default), every partition of 1,500 users fits in one page: no
        # cursor is followed, and the plan is made.
        capsys.readouterr()
        assert cli.main(["plan", "-c", str(config), "--out", str(out_file)]) == 0
        out_file.unlink()
        # On one cursor the second page needs the expired cursor.
        monkeypatch.setenv("AUTHPOLICY_READ_CONCURRENCY", "1")
        capsys.readouterr()
        assert cli.main(["plan", "-c", str(config), "--out", str(out_file)]) == 1
        _, err = capsys.readouterr()
        # Mailboxes are read first (the config manages SMTP AUTH), users next: either read fails.
        assert (
            err.startswith(("error: reading users failed: ", "error: reading mailboxes failed: "))
            and "Exchange refused the next page" in err
        )
        assert "nothing was changed, try again" in err
        assert len(err.splitlines()) == 1
        assert not out_file.exists()

        code, output = apply_cli(capsys, config)
        assert code == 1
        assert "reading users failed" in output or "reading mailboxes failed" in output
        assert emu.stats()["writes_changed_state"] == 0


# --------------------------------------------------------------------------- concurrent admins


def _delete_user(emu: Emulator, external_id: str) -> None:
    """Another admin deletes a user (the emulator's leavers handle)."""
    assert len(emu.remove_users([external_id])) == 1


def test_a_user_deleted_during_apply_is_reported_and_the_others_continue(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan, before = prepare(connected, config)
    users = [c for c in plan.changes if isinstance(c, UserChange)]
    victim = users[-1]  # the last batch: certainly not written yet after 50 writes
    connected.set_faults(latency_base_ms=20)
    watcher = when_writes_reach(connected, 50, lambda: _delete_user(connected, victim.user_id))
    audit = tmp_path / "audit.jsonl"
    code, output = apply_cli(capsys, config, "--max-concurrency", "2", "--audit-log", str(audit))
    watcher.join()
    assert code == 0, output  # a user gone is not a failure of the apply: nothing is left to do
    assert f"Apply complete: {len(plan.changes) - 1} applied, 0 failed, 0 skipped, 1 not found" in (
        output
    )
    assert f"  not found: user {victim.user} -> 'Block Basic Auth 2026': Set-User: not found: " in (
        output
    )
    records = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    missing = [r for r in records if r.get("result") == "not_found"]
    assert [r["change"]["user"] for r in missing] == [victim.user]
    assert missing[0]["message"].startswith("Set-User: not found: ")
    log = connected.write_log()
    assert writes_outside_plan(plan, log, upn_index(connected)) == []
    assert len(log) == len(plan.changes) - 1
    expected = (planned_keys(plan) - {("Set-User", victim.user_id.casefold())}) | {
        ("Remove-User", victim.user_id.casefold())
    }
    assert state_diff_keys(before, connected.dump_state()) == expected
    connected.set_faults(**NO_FAULTS)
    assert plan_now(connected.connection_env("writer"), config).changes == ()


# --------------------------------------------------------------------------- malformed answers


@pytest.mark.parametrize(
    "fault",
    [
        "nul_gzip_403",
        # Each costs ~15 s of real backoff (the client's 1 s base delay): heavy suite.
        pytest.param("non_json", marks=pytest.mark.reliability),
        pytest.param("truncated_json", marks=pytest.mark.reliability),
        pytest.param("missing_value", marks=pytest.mark.reliability),
    ],
)
def test_malformed_answers_mid_apply_converge_or_stop_cleanly(
    connected: Emulator, config: Path, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    plan, before = prepare(connected, config)
    # Single InvokeCommand answers only ($batch members are never malformed by the emulator):
    # the reads and the policy/default writes. A malformed answer to a write is ambiguous.
    connected.set_faults(**{f"{fault}_rate": 0.3, "fault_seed": 4})
    code, output = apply_cli(capsys, config)
    assert "Traceback" not in output
    assert connected.stats()["faults_injected"].get(fault, 0) >= 1
    connected.set_faults(**{f"{fault}_rate": 0.0})
    last = output.strip().splitlines()[-1] if output.strip() else ""
    note(
        fault, injected=connected.stats()["faults_injected"].get(fault), exit=code, last=repr(last)
    )
    if code != 0:
        # Gave up on a malformed answer: a clear message, then a clean rerun finishes.
        assert code == 1, output
        code, output = apply_cli(capsys, config)
        assert code == 0, output
    assert_converged_within_plan(connected, config, plan, before)
