"""The built wheel, installed into one fresh virtual environment outside the repository (shared
by these tests), used as an end user would: the demo, init and validate from an empty folder, a
plan against the emulator the installed command serves, and the GitHub Action's script with
that installation first on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.reliability


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "AUTHPOLICY_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """bin/ of a fresh venv (outside the repository) holding only the built wheel and its
    dependencies."""
    home = Path(tempfile.mkdtemp(prefix="authpolicy-wheel-"))
    try:
        dist = home / "dist"
        built = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                str(ROOT),
                "-w",
                str(dist),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        (wheel,) = dist.glob("exo_authpolicy-*.whl")
        venv.EnvBuilder(with_pip=True).create(home / "venv")
        python = home / "venv" / "bin" / "python"
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        yield home / "venv" / "bin"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(bin_dir: Path, *argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "authpolicy"), *argv],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_init_and_validate_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    demo = _run(installed, "demo", "--users", "200", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "No changes. The tenant matches the desired state." in demo.stdout
    init = _run(installed, "init", str(tmp_path / "repo"), cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    check = _run(
        installed, "validate", "-c", str(tmp_path / "repo" / "policies.yaml"), cwd=tmp_path
    )
    assert check.returncode == 0, check.stderr
    schema = _run(installed, "schema", cwd=tmp_path)
    assert schema.returncode == 0 and '"$schema"' in schema.stdout


def test_plan_and_the_action_against_the_installed_emulator(
    installed: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "emulator.env"
    serve = [str(installed / "authpolicy"), "emulator", "serve", "--users", "150", "--fresh"]
    serve += ["--state-dir", str(tmp_path / "state"), "--env-file", str(env_file)]
    server = subprocess.Popen(
        serve,
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        connection = dict(
            line.split("=", 1) for line in env_file.read_text(encoding="utf-8").splitlines()
        )
        init = _run(installed, "init", str(tmp_path / "repo"), cwd=tmp_path)
        assert init.returncode == 0, init.stderr
        repo = tmp_path / "repo"
        plan = _run(installed, "plan", "--detailed-exitcode", cwd=repo, **connection)
        assert plan.returncode in (0, 2), plan.stdout[-2000:] + plan.stderr[-2000:]
        assert "authpolicy plan for tenant" in plan.stdout
        # The Action's one step, with this installation first on PATH (as its install leaves it).
        summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
        action = subprocess.run(
            ["bash", str(ROOT / "action" / "run.sh")],
            cwd=repo,
            env=_clean_env(
                **connection,
                PATH=f"{installed}{os.pathsep}{os.environ['PATH']}",
                GITHUB_STEP_SUMMARY=str(summary),
                GITHUB_OUTPUT=str(output),
                RUNNER_TEMP=str(tmp_path / "runner"),
                AUTHPOLICY_VERB="plan",
            ),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert action.returncode == 0, action.stdout[-2000:] + action.stderr[-2000:]
        outputs = dict(line.split("=", 1) for line in output.read_text("utf-8").splitlines())
        assert outputs["exit-code"] in ("0", "2") and Path(outputs["plan-path"]).is_file()
        assert "<!-- authpolicy:plan -->" in summary.read_text(encoding="utf-8")
    finally:
        server.terminate()
        server.wait(timeout=30)
