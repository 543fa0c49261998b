"""The GitHub Action (action.yml + action/run.sh): its contract, and its script run for real
against the emulator with the variables a runner sets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.emulator import Emulator, EmulatorSettings

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"


def test_the_action_installs_its_own_checkout_and_declares_its_interface() -> None:
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"verb", "config", "format", "plan", "comment"}
    assert set(action["outputs"]) == {"exit-code", "plan-path", "markdown-path"}
    runs = [step.get("run", "") for step in action["runs"]["steps"]]
    assert 'python -m pip install --quiet "${GITHUB_ACTION_PATH}"' in runs
    assert not any("install authpolicy" in r or "authpolicy==" in r for r in runs)
    uses = [step.get("uses", "") for step in action["runs"]["steps"]]
    assert uses[0] == "actions/setup-python@v5"
    assert "actions/github-script@v7" in uses  # the comment, updated in place by its marker


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=80, seed=5, state_dir=tmp_path_factory.mktemp("action"), save_on_exit=False
    )
    with Emulator(settings) as emulator:
        yield emulator


def _run(emu: Emulator, tmp_path: Path, **inputs: str) -> tuple[int, dict[str, str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AUTHPOLICY_"))}
    env.update(emu.connection_env("writer"))
    # `authpolicy` of this checkout first on PATH, as the action's install step leaves it.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    env.update(
        {
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(output),
            "RUNNER_TEMP": str(tmp_path / "runner"),
            **{f"AUTHPOLICY_{k.upper()}": v for k, v in inputs.items()},
        }
    )
    result = subprocess.run(
        ["bash", str(ROOT / "action" / "run.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outputs = (
        dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines())
        if output.exists()
        else {}
    )
    text = summary.read_text(encoding="utf-8") if summary.exists() else ""
    return result.returncode, outputs, text + result.stdout + result.stderr


def test_plan_writes_the_summary_and_outputs_then_apply_applies_the_saved_plan(
    emu: Emulator, tmp_path: Path
) -> None:
    # 80 users: the sample's 10% guard would block the first apply (policy and SMTP AUTH).
    sample = (ROOT / "policies.yaml").read_text(encoding="utf-8")
    (tmp_path / "policies.yaml").write_text(
        sample.replace("max_user_changes: 10%", "max_user_changes: 50%"), encoding="utf-8"
    )
    code, outputs, text = _run(emu, tmp_path, verb="plan")
    assert code == 0, text  # 2 (changes pending) is a result, not a failed step
    assert outputs["exit-code"] == "2"
    plan_path = Path(outputs["plan-path"])
    assert plan_path.is_file() and plan_path.name == "plan.json"
    assert "<!-- authpolicy:plan -->" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert Path(outputs["markdown-path"]).is_file()

    code, outputs, text = _run(emu, tmp_path, verb="apply", plan=str(plan_path))
    assert code == 0, text
    assert outputs["exit-code"] == "0"
    assert "Apply complete:" in text
    assert "```text" in (tmp_path / "summary.md").read_text(encoding="utf-8")

    code, outputs, text = _run(emu, tmp_path, verb="drift")
    assert (code, outputs["exit-code"]) == (0, "0"), text


def test_an_error_fails_the_step_and_a_bad_input_is_named(emu: Emulator, tmp_path: Path) -> None:
    code, outputs, text = _run(emu, tmp_path, verb="plan", config="missing.yaml")
    assert code == 1 and outputs["exit-code"] == "1"
    assert "::error::authpolicy plan failed (exit 1)" in text
    code, _, text = _run(emu, tmp_path, verb="destroy")
    assert code == 1
    assert "::error::authpolicy action: unknown verb 'destroy'" in text


def test_the_tenants_input_runs_every_tenant(tmp_path: Path) -> None:
    settings = EmulatorSettings(
        users=80, seed=5, state_dir=tmp_path / "emu", save_on_exit=False, tenants=2
    )
    with Emulator(settings) as fleet:
        base = (ROOT / "policies.yaml").read_text(encoding="utf-8")
        base = base.replace("tenant: contoso.onmicrosoft.com\n", "").replace(
            "max_user_changes: 10%", "max_user_changes: 60%"
        )
        (tmp_path / "base.yaml").write_text(base, encoding="utf-8")
        ids = fleet.tenant_ids
        (tmp_path / "tenants.yaml").write_text(
            "version: 1\nbase: base.yaml\ntenants:\n"
            f"  contoso: {{tenant: {ids[0]}}}\n  fabrikam: {{tenant: {ids[1]}}}\n",
            encoding="utf-8",
        )
        code, outputs, text = _run(fleet, tmp_path, verb="plan", tenants="tenants.yaml")
        assert code == 0, text
        assert outputs["exit-code"] == "2"
        plans = Path(outputs["plan-path"])
        assert (plans / "contoso" / "plan.json").is_file()
        assert (plans / "fabrikam" / "plan.json").is_file()
        assert "<!-- authpolicy:fleet-plan -->" in (tmp_path / "summary.md").read_text("utf-8")
        code, outputs, text = _run(
            fleet, tmp_path, verb="apply", tenants="tenants.yaml", plan=str(plans)
        )
        assert code == 0 and outputs["exit-code"] == "0", text
        assert "contoso   applied" in text and "fabrikam  applied" in text
        code, outputs, text = _run(fleet, tmp_path, verb="drift", tenants="tenants.yaml")
        assert (code, outputs["exit-code"]) == (0, "0"), text
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    assert "<!-- authpolicy:fleet-plan -->" in action  # the fleet comment's own marker
