"""`authpolicy drift`: the read-only check for schedules (exit 2 on drift, 0 otherwise)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from reconciler.commands import drift as drift_command
from reconciler.plan.pipeline import PlanRun
from tests.commands.emulated import ROOT_POLICIES, connect, emulator, run_cli
from tests.render.scenarios import contoso_plan, no_changes_plan


def stub(monkeypatch, plan) -> None:
    def fake(args, environ=os.environ, progress=None, verb="plan"):
        return PlanRun(None, SimpleNamespace(name=plan.tenant), None, plan)  # type: ignore[arg-type]

    monkeypatch.setattr(drift_command, "plan_from_args", fake)


def test_drift_exits_2_on_any_change_guarded_or_not(monkeypatch, capsys) -> None:
    stub(monkeypatch, contoso_plan())
    code, stdout, _ = run_cli(capsys, "drift")
    assert code == 2
    assert "Plan: 1 to create, 1 to update, 1 to delete" in stdout
    stub(monkeypatch, dataclasses.replace(contoso_plan(), guards=()))
    assert run_cli(capsys, "drift", "--format", "markdown")[0] == 2


def test_no_drift_exits_0(monkeypatch, capsys) -> None:
    stub(monkeypatch, no_changes_plan())
    code, stdout, _ = run_cli(capsys, "drift", "--format", "json")
    assert code == 0
    assert '"total": 0' in stdout


def test_drift_has_no_out_flag(monkeypatch, capsys) -> None:
    stub(monkeypatch, no_changes_plan())
    code, _, stderr = run_cli(capsys, "drift", "--out", "x.json")
    assert code == 1
    assert "unrecognized arguments: --out x.json" in stderr


@pytest.mark.integration
def test_drift_against_the_emulator_then_none_after_apply(
    monkeypatch, capsys, tmp_path: Path
) -> None:
    with emulator(tmp_path, users=200) as emu:
        connect(monkeypatch, emu, app="writer")
        code, stdout, _ = run_cli(capsys, "drift", "-c", str(ROOT_POLICIES))
        assert code == 2
        assert '~ update policy "Block Basic Auth"' in stdout
        code, _, err = run_cli(
            capsys, "apply", "-c", str(ROOT_POLICIES), "--auto-approve", "--force"
        )
        assert code == 0, err
        code, stdout, _ = run_cli(capsys, "drift", "-c", str(ROOT_POLICIES))
        assert code == 0, stdout
        assert "No changes. The tenant matches the desired state." in stdout


@pytest.mark.parametrize("verb", ["plan", "drift"])
def test_a_file_for_another_tenant_is_refused_by_plan_and_drift(
    verb: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.commands.emulated import ROOT_POLICIES, connect, emulator, run_cli

    config = tmp_path / "policies.yaml"
    config.write_text(
        ROOT_POLICIES.read_text(encoding="utf-8").replace(
            "tenant: contoso.onmicrosoft.com", "tenant: fabrikam.onmicrosoft.com"
        ),
        encoding="utf-8",
    )
    with emulator(tmp_path / "emu") as emu:
        connect(monkeypatch, emu)
        code, out, err = run_cli(capsys, verb, "-c", str(config))
    assert (code, out) == (1, "")
    assert err == (
        f"error: {config} is for tenant 'fabrikam.onmicrosoft.com' but the connection is to "
        f"'{emu.tenant_id}'; refusing to {verb} (check AZURE_TENANT_ID)\n"
    )
