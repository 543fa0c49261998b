"""`authpolicy apply` end to end against the in-memory fake (planning and rendering stubbed)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.apply.verify import USER_SAMPLE
from reconciler.commands import apply as apply_command
from reconciler.model import (
    Assignments,
    DesiredState,
    Guard,
    Plan,
    PolicyCreate,
    PolicyReplace,
    SnapshotNeeds,
    UserChange,
)
from tests.fakes import FakeTenant

TENANT = "contoso.onmicrosoft.com"


def user(i: int, after: str | None = "Block") -> UserChange:
    return UserChange("user_assign", f"user{i}@contoso.com", f"u-{i}", None, after, "everyone")


class World:
    """What the stubs return: a fake tenant, the desired state, and the plan `plan` would make."""

    def __init__(self) -> None:
        self.tenant = FakeTenant.with_users(5, policies={"Block": []})
        self.desired = DesiredState(
            version=1,
            tenant=TENANT,
            policies=(),
            assignments=Assignments(revoke_sessions=True),
        )
        self.plan = Plan(
            tenant=TENANT,
            fingerprint="sha256:one",
            changes=(PolicyCreate("Devices", frozenset({"smtp"})), *[user(i) for i in range(5)]),
            inputs={"config": "c", "users": "u"},
        )
        self.saved: Plan | None = None


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    w = World()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        apply_command,
        "_read_and_plan",
        lambda args: (w.desired, w.tenant, w.tenant.read_snapshot(SnapshotNeeds()), w.plan),
    )
    monkeypatch.setattr(
        apply_command, "_render", lambda plan, color, show_users=20: f"PLAN {len(plan.changes)}\n"
    )
    monkeypatch.setattr(apply_command, "read_saved_plan", lambda path: w.saved)
    return w


def audit_lines(path: Path) -> list[dict]:
    """The change records (the run's closing summary record is checked on its own)."""
    return [r for r in all_audit_lines(path) if r.get("record") not in ("run", "intent")]


def all_audit_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("flag", "checked"), [(None, USER_SAMPLE), ("all", 30)])
def test_check_users_chooses_a_sample_or_every_changed_user(
    world: World, tmp_path: Path, capsys, flag: str | None, checked: int
) -> None:
    world.tenant = FakeTenant.with_users(30, policies={"Block": []})
    world.plan = replace(world.plan, changes=tuple(user(i) for i in range(30)))
    read: list[str] = []
    real = world.tenant.read_users
    world.tenant.read_users = lambda ids: read.extend(ids) or real(ids)  # type: ignore[method-assign]
    extra = [] if flag is None else ["--check-users", flag]
    argv = ["apply", "--auto-approve", "--audit-log", str(tmp_path / "a.jsonl"), *extra]
    assert cli.main(argv) == 0
    assert len(read) == checked
    out = capsys.readouterr().out
    if flag is None:
        assert f"Verified: {USER_SAMPLE} of 30 changed users (an even sample;" in out
    else:
        assert "Verified: all 30 changed users hold." in out


def test_without_terminal_or_auto_approve_it_refuses_and_writes_nothing(
    world: World, capsys
) -> None:
    assert cli.main(["apply"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: refusing to apply without confirmation: not a terminal; pass --auto-approve (CI) "
        "or apply a reviewed plan file (plan --out PLAN.json)\n"
    )
    assert world.tenant.writes == []


def test_auto_approve_applies_verifies_and_audits(world: World, tmp_path: Path, capsys) -> None:
    audit = tmp_path / "logs" / "audit.jsonl"
    assert cli.main(["apply", "--auto-approve", "--audit-log", str(audit)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "PLAN 6"
    assert out.splitlines()[-3:] == [
        "Apply complete: 6 applied, 0 failed, 0 skipped, 0 not found (0 retries).",
        "Verified: 1 policy or default change and all 5 changed users hold.",
        f"Audit log: {audit}",
    ]
    assert "apply: user assignments: 5 applied" in err
    assert len(world.tenant.writes) == 6
    assert all(w.revoke_sessions for w in world.tenant.writes if w.cmdlet == "Set-User")
    records = audit_lines(audit)
    assert len(records) == 6
    assert {r["tenant"] for r in records} == {TENANT}
    assert {r["fingerprint"] for r in records} == {"sha256:one"}
    assert records[1]["change"] == {
        "kind": "user_assign",
        "user": "user0@contoso.com",
        "user_id": "u-0",
        "before": None,
        "after": "Block",
        "rule": "everyone",
    }
    assert records[1]["result"] == "applied" and records[1]["attempts"] == 1
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert stat.S_IMODE(audit.parent.stat().st_mode) == 0o700


def test_default_audit_log_is_under_dot_authpolicy(world: World, tmp_path: Path) -> None:
    assert cli.main(["apply", "--auto-approve"]) == 0
    (log,) = (tmp_path / ".authpolicy").glob("audit-*.jsonl")
    assert len(audit_lines(log)) == 6


def test_guard_blocks_with_exit_3_and_force_passes(world: World, tmp_path: Path, capsys) -> None:
    world.plan = Plan(
        tenant=TENANT,
        fingerprint="sha256:one",
        changes=world.plan.changes,
        guards=(Guard("max_user_changes", "5 user changes exceed max_user_changes 2", 5, 2),),
    )
    assert cli.main(["apply", "--auto-approve"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "blocked: 5 user changes exceed max_user_changes 2",
        "error: 1 safety guard(s) block this apply; review the plan and pass --force to apply "
        "it anyway (or --force=max_user_changes to override only these)",
    ]
    assert world.tenant.writes == []
    # Forcing another guard does not override this one; a name that is no guard is refused.
    assert cli.main(["apply", "--auto-approve", "--force=max_policy_deletes"]) == 3
    capsys.readouterr()
    assert cli.main(["apply", "--auto-approve", "--force=max_user_change"]) == 1
    assert capsys.readouterr().err == (
        "error: --force=max_user_change: unknown guard max_user_change; name one of "
        "max_user_changes, max_policy_deletes, default_cleared, default_weakened, "
        "max_active_users_blocked, or give "
        "--force alone to override every guard\n"
    )
    assert world.tenant.writes == []
    audit = tmp_path / "forced.jsonl"
    assert (
        cli.main(["apply", "--auto-approve", "--force=max_user_changes", "--audit-log", str(audit)])
        == 0
    )
    assert all_audit_lines(audit)[-1]["forced"] == ["max_user_changes"]
    assert len(world.tenant.writes) == 6
    # A bare --force overrides every guard.
    assert apply_command.forced_guards("all") == {"all"}
    assert apply_command.forced_guards(None) == set()
    assert apply_command.forced_guards("max_user_changes,default_cleared") == {
        "max_user_changes",
        "default_cleared",
    }


def test_other_tenant_is_refused_before_any_write(world: World) -> None:
    from reconciler.errors import AuthPolicyError
    from reconciler.plan.pipeline import check_tenant_guard

    # The guard runs inside the pipeline every planning verb takes (plan_from_args).
    desired = DesiredState(
        version=1, tenant="fabrikam.onmicrosoft.com", policies=(), source="policies.yaml"
    )
    snapshot = world.tenant.read_snapshot(SnapshotNeeds())
    with pytest.raises(AuthPolicyError) as err:
        check_tenant_guard(desired, world.tenant, snapshot, "apply")
    assert str(err.value) == (
        "policies.yaml is for tenant 'fabrikam.onmicrosoft.com' but the connection is to "
        "'contoso.onmicrosoft.com'; refusing to apply (check AZURE_TENANT_ID)"
    )
    check_tenant_guard(world.desired, world.tenant, snapshot, "apply")  # its own: no error
    assert world.tenant.writes == []


def test_saved_plan_that_still_holds_runs_without_a_prompt(world: World) -> None:
    world.saved = world.plan
    assert cli.main(["apply", "plan.json"]) == 0
    assert len(world.tenant.writes) == 6


def test_stale_saved_plan_is_refused_naming_what_moved(world: World, capsys) -> None:
    world.saved = Plan(
        tenant=TENANT,
        fingerprint="sha256:old",
        changes=(PolicyCreate("Devices", frozenset({"smtp"})), *[user(i) for i in range(7)]),
        inputs={"config": "c", "users": "u-old"},
    )
    assert cli.main(["apply", "plan.json", "--force"]) == 1
    assert capsys.readouterr().err == (
        "error: plan.json is stale, refusing to apply: 2 user(s) changed (first few: "
        "user5@contoso.com (the plan's change is no longer needed), user6@contoso.com (the "
        "plan's change is no longer needed)). Run plan again and review the new plan.\n"
    )
    assert world.tenant.writes == []


def test_saved_replace_needs_allow_replace(world: World, capsys) -> None:
    world.saved = Plan(
        tenant=TENANT,
        fingerprint="sha256:one",
        changes=(PolicyReplace("Block", (), frozenset()),),
    )
    assert cli.main(["apply", "plan.json"]) == 1
    assert capsys.readouterr().err == (
        "error: plan.json removes and recreates policies (replace); pass --allow-replace to "
        "apply it\n"
    )
    assert world.tenant.writes == []


def test_failures_are_summarised_and_exit_1(world: World, capsys) -> None:
    world.tenant.fail_create["Devices"] = "Name is reserved."
    world.plan = Plan(
        tenant=TENANT,
        fingerprint="sha256:one",
        changes=(PolicyCreate("Devices", frozenset({"smtp"})), user(0, "Devices"), user(1)),
    )
    assert cli.main(["apply", "--auto-approve"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1:4] == [
        "  failed: create policy 'Devices': Name is reserved.",
        "  skipped: user user0@contoso.com -> 'Devices': skipped because create policy "
        "'Devices' failed",
        "Apply finished with errors: 1 applied, 1 failed, 1 skipped, 0 not found (0 retries). "
        "Run apply again to retry.",
    ]


def test_nothing_to_do_exits_0_without_an_audit_file(world: World, tmp_path: Path) -> None:
    world.plan = Plan(tenant=TENANT, fingerprint="sha256:none", changes=())
    assert cli.main(["apply"]) == 0
    assert not (tmp_path / ".authpolicy").exists()


def test_ctrl_c_finishes_in_flight_calls_and_leaves_a_whole_audit_log(
    world: World, tmp_path: Path, capsys
) -> None:
    world.tenant = FakeTenant.with_users(100, policies={"Block": []})
    world.plan = Plan(
        tenant=TENANT, fingerprint="sha256:one", changes=tuple(user(i) for i in range(100))
    )
    sent: list[int] = []

    def interrupt_on_third_batch(writes) -> None:
        sent.append(len(writes))
        if len(sent) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    world.tenant.before_user_batch = interrupt_on_third_batch
    audit = tmp_path / "audit.jsonl"
    code = cli.main(
        ["apply", "--auto-approve", "--max-concurrency", "1", "--audit-log", str(audit)]
    )

    assert code == 130
    applied = len(world.tenant.writes)
    assert 30 <= applied < 100
    records = audit_lines(audit)
    assert len(records) == 100
    assert sum(r["result"] == "applied" for r in records) == applied
    summary = all_audit_lines(audit)[-1]
    assert summary["record"] == "run" and summary["interrupted"] is True
    assert summary["counts"]["applied"] == applied
    assert {r["message"] for r in records if r["result"] == "skipped"} == {
        "not started: apply was interrupted"
    }
    out, err = capsys.readouterr()
    assert "Stopping: waiting for the calls in flight to finish" in err
    assert out.splitlines()[-2] == (
        f"Apply interrupted: {applied} change(s) done ({applied} applied, 0 failed, "
        f"0 skipped, 0 not found (0 retries)), {100 - applied} not started. "
        "Run apply again to finish."
    )


def test_on_a_terminal_only_yes_applies(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(apply_command, "_is_terminal", lambda: True)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert cli.main(["apply"]) == 1
    # (on a terminal the answer's newline is echoed; here the reply follows the prompt)
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  Enter a value: Apply cancelled; nothing was changed."
    )
    assert world.tenant.writes == []

    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    assert cli.main(["apply"]) == 0
    assert len(world.tenant.writes) == 6


def test_force_before_the_plan_file_still_means_force_all(world: World, tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text("{}", encoding="utf-8")
    world.saved = world.plan
    assert cli.main(["apply", "--force", "plan.json", "--auto-approve"]) == 0
    assert len(world.tenant.writes) == 6


def test_audit_records_name_the_ci_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_REPOSITORY", "BUILD_BUILDID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("CI_PIPELINE_ID", raising=False)
    assert apply_command._ci_run() is None
    monkeypatch.setenv("BUILD_BUILDID", "77")
    monkeypatch.setenv("SYSTEM_TEAMPROJECT", "it")
    assert apply_command._ci_run() == "azure-devops:it/77"
    monkeypatch.setenv("GITHUB_RUN_ID", "123")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    monkeypatch.setenv("GITHUB_REPOSITORY", "contoso/policies")
    assert apply_command._ci_run() == "github:contoso/policies/123/2"
