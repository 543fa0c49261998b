"""The CI niceties of issue 17 against the emulator: the env file written once it listens, one
emulator per state folder, a plan that posts nothing when there is nothing to change, the job
summary, `apply --show-users`, when a report was made, and tenants named by their domain."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from reconciler.render.markdown import MARKER
from tests.commands.emulated import ROOT, ROOT_POLICIES, connect, emulator, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def emu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator(tmp_path, users=120, seed=7) as emu:
        connect(monkeypatch, emu)  # AZURE_TENANT_ID is the tenant GUID
        monkeypatch.setenv("AUTHPOLICY_TODAY", "2026-12-27")
        monkeypatch.chdir(tmp_path)
        text = ROOT_POLICIES.read_text(encoding="utf-8").replace(
            "max_user_changes: 10%", "max_user_changes: 60%"
        )
        (tmp_path / "policies.yaml").write_text(text, encoding="utf-8")
        yield emu


def test_the_env_file_is_written_once_listening_and_a_state_folder_has_one_emulator(
    tmp_path: Path,
) -> None:
    state, env_file = tmp_path / "state", tmp_path / "emulator.env"
    argv = [sys.executable, "-m", "reconciler", "emulator", "serve", "--users", "30"]
    argv += ["--state-dir", str(state), "--env-file", str(env_file), "--fresh"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AUTHPOLICY_"))}
    env["PYTHONPATH"] = str(ROOT)
    first = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = env_file.read_text(encoding="utf-8").splitlines()
        values = dict(line.split("=", 1) for line in lines)
        assert values["AUTHPOLICY_ENDPOINT"].startswith("https://127.0.0.1:")
        assert "AZURE_CLIENT_SECRET" in values
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it holds the app's secret
        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert re.search(
            r"another `authpolicy emulator serve` \(pid \d+\) uses .*state; stop it", second.stderr
        )
    finally:
        first.terminate()
        first.wait(timeout=30)
    shutil.rmtree(state, ignore_errors=True)


def test_plan_posts_nothing_with_nothing_to_change_and_writes_the_job_summary(
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = run_cli(capsys, "plan", "--format", "markdown", "--quiet-when-no-changes")
    assert code == 0 and out.startswith(MARKER)  # there are changes: shown
    code, out, err = run_cli(
        capsys, "apply", "--auto-approve", "--show-users", "1", "--audit-log", "a.jsonl"
    )
    assert code == 0, out + err
    assert "... and " in out and "more (--show-users all lists every one)" in out
    code, out, _ = run_cli(
        capsys, "plan", "--format", "markdown", "--quiet-when-no-changes", "--job-summary"
    )
    assert (code, out) == (0, "")  # nothing to change: nothing to post
    assert summary.read_text(encoding="utf-8").count(MARKER) == 1  # the summary still has it
    code, out, _ = run_cli(capsys, "drift", "--job-summary")
    assert code == 0 and summary.read_text(encoding="utf-8").count(MARKER) == 2
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    code, _, err = run_cli(capsys, "plan", "--job-summary")
    assert code == 1 and "GITHUB_STEP_SUMMARY is not set" in err


def test_plans_and_reports_name_the_tenant_by_its_domain_and_say_when(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    guid = emu.tenant_id
    code, out, _ = run_cli(capsys, "drift")
    assert code == 2 and f'authpolicy plan for tenant "contoso.onmicrosoft.com" ({guid})' in out
    code, out, _ = run_cli(capsys, "plan", "--format", "markdown")
    assert code == 0 and f"### authpolicy plan for contoso.onmicrosoft.com ({guid})" in out
    code, out, _ = run_cli(capsys, "plan", "--format", "json")
    assert code == 0
    plan = json.loads(out)
    assert (plan["tenant"], plan["tenant_domain"]) == (guid, "contoso.onmicrosoft.com")
    code, out, _ = run_cli(capsys, "report", "--format", "json", "--sign-in-days", "0")
    assert code == 0
    made = json.loads(out)["made_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", made)
    _, out, _ = run_cli(capsys, "report", "--sign-in-days", "0")
    assert out.startswith(f"Basic-auth exposure report: contoso.onmicrosoft.com (read {made[:13]}")
