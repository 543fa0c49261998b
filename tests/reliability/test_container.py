"""The Dockerfile. No container engine runs on these machines (CI's included), so its build is
exercised the way it runs: the files it COPYs, installed by its own `pip install` line into a
fresh virtual environment (not editable, like an image or a wheel), then the installed command
used from an empty folder, as the container's non-root user would."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

pytestmark = pytest.mark.reliability


def _instructions() -> list[tuple[str, str]]:
    out = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_is_slim_non_root_and_runs_authpolicy() -> None:
    steps = _instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["authpolicy"]') in steps
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "pip install --no-cache-dir ." in runs  # this checkout, never the index by name


def test_the_images_install_steps_work_in_a_fresh_venv(tmp_path: Path) -> None:
    steps = _instructions()
    context = tmp_path / "src"
    context.mkdir()
    for word, rest in steps:
        if word != "COPY":
            continue
        *sources, _target = shlex.split(rest)
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(
                    origin, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(origin, context / source)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = next(rest for word, rest in steps if word == "RUN" and "pip install" in rest)
    pip_argv = shlex.split(install.split("&&")[0])
    assert pip_argv[:4] == ["python", "-m", "pip", "install"]
    result = subprocess.run(
        [str(python), *pip_argv[1:], "--quiet"],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    authpolicy = env_dir / "bin" / "authpolicy"
    empty = tmp_path / "work"
    empty.mkdir()
    shutil.rmtree(context)  # the image removes its build context too
    run = subprocess.run(
        [str(authpolicy), "--version"], cwd=empty, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0 and run.stdout.startswith("authpolicy "), run.stderr
    # The demo and init work from the installed package alone (samples and schema shipped).
    demo = subprocess.run(
        [str(authpolicy), "demo", "--users", "200"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "No changes. The tenant matches the desired state." in demo.stdout
    init = subprocess.run(
        [str(authpolicy), "init", str(empty / "repo")], capture_output=True, text=True, check=False
    )
    assert init.returncode == 0, init.stderr
    check = subprocess.run(
        [str(authpolicy), "validate", "-c", str(empty / "repo" / "policies.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
