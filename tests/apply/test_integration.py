"""`authpolicy apply` against the emulator over real HTTPS, counted by the emulator's stats.

The promise under test: nothing is written that the plan did not show (state-changing writes
== planned changes), everything shown is written or reported, and a rerun finishes the job
(after faults, SIGKILL or Ctrl-C, re-planning gives zero changes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli
from reconciler.apply import MemoryAudit, execute_plan
from reconciler.apply.verify import USER_SAMPLE
from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.model import DEFAULT_RECIPIENT_TYPES, Allowed, Plan, SnapshotNeeds, UserChange
from reconciler.plan.pipeline import plan_from_args
from reconciler.render import plan_from_json
from reconciler.tenant.base import UserWrite
from reconciler.tenant.connect import open_tenant

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Moves (almost) every user to a new policy: one create, one default change, a user change per
# user. The 10% guard blocks it without --force.
EVERYONE_MOVES = """\
version: 1
tenant: contoso.onmicrosoft.com
policies:
  Block Basic Auth 2026:
    allow: []
  SMTP relay devices:
    allow: [smtp]
default_policy: Block Basic Auth 2026
assignments:
  unmatched: ignore
  revoke_sessions: true
  rules:
    - name: break-glass
      policy: null
      match: {users: [breakglass@contoso.com]}
    - name: devices
      policy: SMTP relay devices
      match: {upn: ["scanner-*@contoso.com"]}
    - name: everyone
      policy: Block Basic Auth 2026
      match: all
safety:
  max_user_changes: 10%
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(EVERYONE_MOVES, encoding="utf-8")
    return path


@pytest.fixture
def emu(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    users = getattr(request, "param", 300)
    with Emulator(EmulatorSettings(users=users, seed=7, state_dir=tmp_path / "emu")) as emulator:
        yield emulator


@pytest.fixture
def connected(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    for key in (
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in emu.connection_env("writer").items():
        monkeypatch.setenv(key, value)
    return emu


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def saved_plan(capsys: pytest.CaptureFixture[str], config: Path, out: Path) -> Plan:
    code, _, err = run_cli(capsys, "plan", "-c", str(config), "--out", str(out))
    assert code == 0, err
    return plan_from_json(out.read_text(encoding="utf-8"))


def replan_changes(capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path) -> int:
    return len(saved_plan(capsys, config, tmp_path / "again.json").changes)


def _quote(policy: str | None) -> str:
    return f"'{policy}'" if policy is not None else "none"


def audit_records(path: Path) -> list[dict[str, Any]]:
    """The change records; the run's closing summary is `run_summary(path)`."""
    return [r for r in _all_records(path) if r.get("record") not in ("run", "intent")]


def _all_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_summary(path: Path) -> dict[str, Any]:
    last = _all_records(path)[-1]
    assert last["record"] == "run"
    return last


# --------------------------------------------------------------------------- the main promise


@pytest.mark.parametrize("emu", [5000], indirect=True)
def test_5000_users_exactly_the_planned_writes_then_zero(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = saved_plan(capsys, config, tmp_path / "plan.json")
    users = connected.dump_state()["users"]
    kind_of = {u["UserPrincipalName"].casefold(): u["RecipientTypeDetails"] for u in users}
    managed = [u for u in users if u["RecipientTypeDetails"] in DEFAULT_RECIPIENT_TYPES]
    user_changes = [c for c in plan.changes if isinstance(c, UserChange)]
    # Only mailboxes (assignments.recipient_types' default) are planned; the rest are named.
    assert {kind_of[c.user.casefold()] for c in user_changes} <= set(DEFAULT_RECIPIENT_TYPES)
    assert len(user_changes) > 0.9 * len(managed)
    left_out = len(users) - len(managed)
    assert any(w.startswith(f"{left_out:,} users left alone") for w in plan.warnings)
    assert plan.guards  # 10% of 5000 users

    connected.reset_stats()
    audit = tmp_path / "audit.jsonl"
    code, _, err = run_cli(
        capsys, "apply", "-c", str(config), "--auto-approve", "--audit-log", str(audit)
    )
    assert code == 3, err
    assert "pass --force to apply it anyway" in err
    assert connected.stats()["writes_changed_state"] == 0
    assert not audit.exists()

    code, out, err = run_cli(
        capsys, "apply", "-c", str(config), "--auto-approve", "--force", "--audit-log", str(audit)
    )
    assert code == 0, err
    stats = connected.stats()
    assert stats["writes_changed_state"] == len(plan.changes)
    assert stats["writes_noop"] == 0
    # The writes, 10 per $batch, and the verification's sample of users, 10 per $batch.
    assert stats["requests"]["$batch"]["200"] <= len(plan.changes) // 10 + 2 + USER_SAMPLE // 10
    # revoke_sessions: the token reset travels in the same Set-User as the policy.
    set_users = [e for e in stats["write_log"] if e["cmdlet"] == "Set-User"]
    assert len(set_users) == sum(isinstance(c, UserChange) for c in plan.changes)
    assert all(
        {"AuthenticationPolicy", "STSRefreshTokensValidFrom"} <= set(e["params"]) for e in set_users
    )
    assert f"Apply complete: {len(plan.changes)} applied, 0 failed" in out
    users = sum(isinstance(c, UserChange) for c in plan.changes)
    assert (
        f"Verified: 2 policy or default changes and {USER_SAMPLE} of {users:,} changed users" in out
    )
    records = audit_records(audit)
    assert len(records) == len(plan.changes)
    assert {r["result"] for r in records} == {"applied"}
    assert {r["fingerprint"] for r in records} == {plan.fingerprint}
    assert "secret" not in audit.read_text(encoding="utf-8").lower()
    summary = run_summary(audit)
    assert summary["counts"]["applied"] == len(plan.changes)
    assert summary["retries"] == 0 and summary["denied"] is None

    assert replan_changes(capsys, config, tmp_path) == 0


def test_saved_plan_applies_as_reviewed_and_a_stale_one_is_refused_with_the_reason(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_file = tmp_path / "plan.json"
    plan = saved_plan(capsys, config, plan_file)
    someone = next(c for c in plan.changes if isinstance(c, UserChange))

    # Another admin acts between review and apply: a switch on the devices policy, one user.
    other = open_tenant(argparse.Namespace())
    other.read_snapshot(SnapshotNeeds())
    other.update_policy("SMTP relay devices", {"imap": True})
    assert other.set_user_policies([UserWrite(someone.user_id, "Legacy 2018 Policy")])[
        0
    ].status == ("applied")
    connected.reset_stats()

    code, _, err = run_cli(capsys, "apply", str(plan_file), "-c", str(config), "--force")
    assert code == 1
    # The switch is drift the saved plan does not cover (not written, not a refusal); the
    # user the plan moves was moved by somebody else: that is.
    assert err == (
        f"error: {plan_file} is stale, refusing to apply: "
        f"1 user(s) changed (first few: {someone.user} (before "
        f"{_quote(someone.before)} -> 'Legacy 2018 Policy')). Run plan again and review "
        "the new plan.\n"
    )
    assert connected.stats()["writes_changed_state"] == 0

    fresh = saved_plan(capsys, config, plan_file)
    connected.reset_stats()
    code, _, err = run_cli(capsys, "apply", str(plan_file), "-c", str(config), "--force")
    assert code == 0, err
    assert connected.stats()["writes_changed_state"] == len(fresh.changes)
    assert replan_changes(capsys, config, tmp_path) == 0


def test_apply_refuses_another_tenant_before_any_write(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(
        EVERYONE_MOVES.replace("contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"),
        encoding="utf-8",
    )
    connected.reset_stats()
    code, _, err = run_cli(capsys, "apply", "-c", str(config), "--auto-approve", "--force")
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: {config} is for tenant 'fabrikam.onmicrosoft.com' but the connection is to "
        f"'{connected.tenant_id}'; refusing to apply (check AZURE_TENANT_ID)"
    )
    assert connected.stats()["writes_changed_state"] == 0


class CompetingAdmin:
    """The real ExoTenant, except that another admin creates the same policy a moment before
    our create reaches Exchange (so Exchange itself answers "already exists")."""

    def __init__(self, tenant: Any, rival: Any) -> None:
        self._tenant = tenant
        self._rival = rival

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tenant, name)

    def create_policy(self, name: str, allow: Allowed) -> None:
        self._rival.create_policy(name, frozenset({"pop"}))
        self._tenant.create_policy(name, allow)


def test_a_failed_create_skips_its_dependants_and_the_rest_is_applied(
    connected: Emulator, config: Path, tmp_path: Path
) -> None:
    args = argparse.Namespace(config=str(config))
    run = plan_from_args(args)
    rival = open_tenant(argparse.Namespace())
    tenant = CompetingAdmin(run.tenant, rival)
    connected.reset_stats()
    audit = MemoryAudit()
    report = execute_plan(run.plan, tenant, revoke_sessions=True, audit=audit)

    create = report.outcomes[0]
    assert create.change.kind == "policy_create" and create.status == "failed"
    assert "already exists" in create.message
    dependants = [
        o for o in report.outcomes if getattr(o.change, "after", None) == "Block Basic Auth 2026"
    ]
    assert dependants and {o.status for o in dependants} == {"skipped"}
    assert {o.message for o in dependants} == {
        "skipped because create policy 'Block Basic Auth 2026' failed"
    }
    others = [o for o in report.outcomes[1:] if o not in dependants]
    assert others and {o.status for o in others} == {"applied"}
    # The rival's create plus our independent changes; nothing for the skipped ones.
    assert connected.stats()["writes_changed_state"] == 1 + len(others)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("emu", [500], indirect=True)
def test_throttling_503s_and_resets_still_converge_without_extra_writes(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = saved_plan(capsys, config, tmp_path / "plan.json")
    connected.reset_stats()
    connected.set_faults(
        throttle_budget=80,
        throttle_window_seconds=0.5,
        error_503_rate=0.05,
        reset_before_write_rate=0.03,
        reset_after_write_rate=0.03,
        fault_seed=11,
    )
    code, out, err = run_cli(
        capsys,
        "apply",
        "-c",
        str(config),
        "--auto-approve",
        "--force",
        "--audit-log",
        str(tmp_path / "audit.jsonl"),
    )
    assert code == 0, out + err
    stats = connected.stats()
    assert stats["throttled"] > 0
    assert sum(stats["faults_injected"].values()) > 0
    assert stats["writes_changed_state"] == len(plan.changes)
    connected.set_faults(
        throttle_budget=0,
        error_503_rate=0.0,
        reset_before_write_rate=0.0,
        reset_after_write_rate=0.0,
    )
    assert replan_changes(capsys, config, tmp_path) == 0


# --------------------------------------------------------------------------- interruptions


def _subprocess_env(emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AUTHPOLICY_"))}
    env.update(emu.connection_env("writer"))
    env["PYTHONPATH"] = str(ROOT)
    return env


def _start_apply(emu: Emulator, config: Path, audit: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            "-c",
            str(config),
            "--auto-approve",
            "--force",
            "--audit-log",
            str(audit),
            "--max-concurrency",
            "2",
        ],
        env=_subprocess_env(emu),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_writes(emu: Emulator, proc: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while emu.stats()["writes_changed_state"] < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "apply never got going"
        time.sleep(0.02)


@pytest.mark.parametrize("emu", [1000], indirect=True)
def test_sigkill_mid_apply_then_rerun_converges_with_only_planned_writes(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = saved_plan(capsys, config, tmp_path / "plan.json")
    planned_users = {c.user_id for c in plan.changes if isinstance(c, UserChange)}
    connected.reset_stats()
    connected.set_faults(latency_base_ms=15)
    proc = _start_apply(connected, config, tmp_path / "audit.jsonl")
    _wait_for_writes(connected, proc, 200)
    proc.kill()
    proc.wait(timeout=30)
    written = connected.stats()["writes_changed_state"]
    assert 200 <= written < len(plan.changes)
    # Every line the killed run wrote is whole JSON.
    audit_records(tmp_path / "audit.jsonl")

    connected.set_faults(latency_base_ms=0)
    code, out, err = run_cli(capsys, "apply", "-c", str(config), "--auto-approve", "--force")
    assert code == 0, out + err
    stats = connected.stats()
    assert stats["writes_changed_state"] == len(plan.changes)
    user_writes = [e for e in stats["write_log"] if e.get("cmdlet") == "Set-User"]
    assert len(user_writes) == len(planned_users)
    assert replan_changes(capsys, config, tmp_path) == 0


@pytest.mark.parametrize("emu", [1000], indirect=True)
def test_ctrl_c_stops_cleanly_with_a_correct_audit_log(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = saved_plan(capsys, config, tmp_path / "plan.json")
    audit = tmp_path / "audit.jsonl"
    connected.reset_stats()
    connected.set_faults(latency_base_ms=15)
    proc = _start_apply(connected, config, audit)
    _wait_for_writes(connected, proc, 100)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Stopping: waiting for the calls in flight to finish" in err
    assert "Apply interrupted:" in out

    records = audit_records(audit)
    assert len(records) == len(plan.changes)
    applied = [r for r in records if r["result"] == "applied"]
    assert len(applied) == connected.stats()["writes_changed_state"]
    assert {r["message"] for r in records if r["result"] == "skipped"} == {
        "not started: apply was interrupted"
    }
    assert 0 < len(applied) < len(plan.changes)


# ------------------------------------------------------------ Set-AuthenticationPolicy bug


def test_null_reference_bug_stops_for_the_policy_and_allow_replace_recreates_it(
    connected: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The root policies.yaml turns off the imap/smtp drift in the default "Block Basic Auth".
    config = ROOT / "policies.yaml"
    connected.set_faults(null_reference_policies=["Block Basic Auth"])
    connected.reset_stats()
    code, out, _ = run_cli(capsys, "apply", "-c", str(config), "--auto-approve", "--force")
    assert code == 1
    assert (
        "  failed: update policy 'Block Basic Auth': Exchange failed Set-AuthenticationPolicy for "
        "'Block Basic Auth' with a known service bug (" in out
    )
    assert "Rerun 'authpolicy apply --allow-replace' to recreate it" in out
    assert "Apply finished with errors: " in out

    before = connected.dump_state()
    holders = _holders(before, "Block Basic Auth")
    assert holders
    code, out, err = run_cli(
        capsys,
        "apply",
        "-c",
        str(config),
        "--auto-approve",
        "--force",
        "--allow-replace",
        "--audit-log",
        str(tmp_path / "audit.jsonl"),
    )
    assert code == 0, out + err
    assert "will be removed and created again (--allow-replace)" in out
    after = connected.dump_state()
    assert _holders(after, "Block Basic Auth") == holders
    policy = next(p for p in after["policies"] if p["Name"] == "Block Basic Auth")
    assert after["organization"]["DefaultAuthenticationPolicy"].lower() == policy["Guid"].lower()
    assert not policy["AllowBasicAuthSmtp"] and not policy["AllowBasicAuthImap"]
    steps = [r.get("step") for r in audit_records(tmp_path / "audit.jsonl") if r.get("step")]
    assert steps[0] == "hold_create" and steps[-1] == "release"
    assert steps.index("hold") < steps.index("remove") < steps.index("create")
    assert not any(p["Name"].startswith("authpolicy-holding-") for p in after["policies"])
    assert replan_changes(capsys, config, tmp_path) == 0


def _holders(state: dict[str, Any], name: str) -> set[str]:
    guid = next(p["Guid"] for p in state["policies"] if p["Name"] == name).lower()
    return {
        u["UserPrincipalName"] for u in state["users"] if (u.get("_policy") or "").lower() == guid
    }


def test_reviewed_plan_with_allow_replace_shows_the_replace_and_applies_it(
    connected: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The replace is reviewed like any change: `plan --allow-replace --out` saves it, holders
    # and all, and `apply PLAN.json --allow-replace` executes exactly that saved plan.
    config = ROOT / "policies.yaml"
    connected.set_faults(null_reference_policies=["Block Basic Auth"])
    saved = tmp_path / "PLAN.json"
    code, out, _ = run_cli(
        capsys, "plan", "-c", str(config), "--allow-replace", "--out", str(saved)
    )
    assert code == 0
    plan = plan_from_json(saved.read_text(encoding="utf-8"))
    replaces = [c for c in plan.changes if c.kind == "policy_replace"]
    assert [c.policy for c in replaces] == ["Block Basic Auth"]
    assert replaces[0].is_default
    assert "will be removed and created again (--allow-replace)" in out

    # Without --allow-replace the saved replace is refused before anything is written.
    connected.reset_stats()
    code, _, err = run_cli(capsys, "apply", "-c", str(config), str(saved), "--force")
    assert code == 1
    assert "removes and recreates policies (replace); pass --allow-replace" in err
    assert connected.stats()["writes_changed_state"] == 0

    code, out, err = run_cli(
        capsys,
        "apply",
        "-c",
        str(config),
        str(saved),
        "--force",
        "--allow-replace",
        "--audit-log",
        str(tmp_path / "audit.jsonl"),
    )
    assert code == 0, out + err
    after = connected.dump_state()
    policy = next(p for p in after["policies"] if p["Name"] == "Block Basic Auth")
    assert after["organization"]["DefaultAuthenticationPolicy"].lower() == policy["Guid"].lower()
    assert not policy["AllowBasicAuthSmtp"] and not policy["AllowBasicAuthImap"]
    assert replan_changes(capsys, config, tmp_path) == 0


def test_every_resend_is_counted_in_the_summary_and_the_audit(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.reliability.test_faults import when_writes_reach

    # The first write of the apply lands; the request after it answers 503 once, which the
    # client sends again by itself (no executor-level resend is involved).
    watcher = when_writes_reach(connected, 1, lambda: connected.set_faults(one_shot=["error_503"]))
    audit = tmp_path / "audit.jsonl"
    code, out, err = run_cli(
        capsys,
        "apply",
        "-c",
        str(config),
        "--auto-approve",
        "--force",
        "--max-concurrency",
        "1",
        "--audit-log",
        str(audit),
    )
    watcher.join()
    assert code == 0, err
    injected = connected.stats()["faults_injected"]
    assert injected == {"error_503": 1}
    assert ", 0 not found (1 retries)." in out
    assert run_summary(audit)["retries"] == 1


def test_a_saved_plan_cannot_edit_a_guard_away(
    connected: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    plan = saved_plan(capsys, config, saved)
    assert plan.guards  # 10% of the users is far less than this plan moves
    text = saved.read_text(encoding="utf-8")
    data = json.loads(text)
    connected.reset_stats()

    # 1. The guards emptied: apply recomputes them from the fresh read and blocks.
    emptied = tmp_path / "emptied.json"
    emptied.write_text(json.dumps({**data, "guards": []}), encoding="utf-8")
    code, _, err = run_cli(capsys, "apply", str(emptied), "-c", str(config), "--auto-approve")
    assert code == 3, err
    assert "pass --force to apply it anyway" in err

    # 2. A second "guards" key after the real one (a JSON reader keeps the last): refused.
    doubled = tmp_path / "doubled.json"
    doubled.write_text(text.rstrip().rstrip("}") + ', "guards": []}', encoding="utf-8")
    code, _, err = run_cli(capsys, "apply", str(doubled), "-c", str(config), "--auto-approve")
    assert code == 1
    assert err == (
        f'error: {doubled} is not a plan file authpolicy wrote: the key "guards" appears twice '
        "in one object\n"
    )

    # 3. Not UTF-8, not a regular file, nested beyond reason: one line each.
    latin = tmp_path / "latin.json"
    latin.write_bytes(text.encode("utf-8") + b"\xff")
    code, _, err = run_cli(capsys, "apply", str(latin), "-c", str(config), "--auto-approve")
    assert (code, err.startswith(f"error: {latin} is not UTF-8 (byte ")) == (1, True), err
    code, _, err = run_cli(capsys, "apply", "/dev/zero", "-c", str(config), "--auto-approve")
    assert (code, err) == (
        1,
        "error: /dev/zero is not a regular file: pass the PLAN.json plan wrote\n",
    )
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    code, _, err = run_cli(capsys, "apply", str(deep), "-c", str(config), "--auto-approve")
    assert code == 1 and "Traceback" not in err and err.startswith(f"error: {deep} is "), err
    assert connected.stats()["write_log"] == []  # none of them wrote anything


def test_a_saved_plan_remembers_its_config_file(
    connected: Emulator,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved = tmp_path / "plan.json"
    saved_plan(capsys, config, saved)
    assert json.loads(saved.read_text(encoding="utf-8"))["config_file"] == str(config)
    monkeypatch.chdir(tmp_path / "emu")  # no policies.yaml here: -c is not needed
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text(encoding="utf-8").replace("10%", "100%"), encoding="utf-8")
    code, _, err = run_cli(capsys, "apply", str(saved), "-c", str(other), "--auto-approve")
    assert code == 1
    assert (
        f"the config differs: the plan was made from {config}, this apply read {other}, and "
        "they do not say the same"
    ) in err
    assert connected.stats()["write_log"] == []
    code, out, err = run_cli(capsys, "apply", str(saved), "--auto-approve", "--force")
    assert code == 0, err
    assert "Apply complete:" in out
