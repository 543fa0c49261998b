"""`authpolicy validate`: exit codes and exactly what is printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_root_policies_yaml_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "policies.yaml"
    assert main(["validate", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (2 policies, 3 rules, 1 to remove, default 'Block Basic Auth')\n"
    assert err == ""


def test_default_file_is_policies_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policies.yaml").write_text("version: 1\ndefault_policy: null\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == "policies.yaml: OK (0 policies, 0 rules, default cleared)\n"


def test_every_problem_is_printed_one_per_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\npolicies:\n  Block:\n    allow: [smpt, imap, imap]\ndefault_policy: Blok\n"
    )
    assert main(["validate", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:4:13: policies.Block.allow[0]: unknown protocol 'smpt'; did you mean 'smtp'?",
        f"{path}:4:25: policies.Block.allow[2]: protocol 'imap' is listed twice (first at [1])",
        f"{path}:5:17: default_policy: policy 'Blok' is not declared in policies; "
        "did you mean 'Block'?",
    ]


def test_missing_file_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.yaml"
    assert main(["validate", "-c", str(missing)]) == 1
    assert capsys.readouterr().err == f"{missing}: file not found\n"


def test_directory_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-c", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"{tmp_path}: is a directory, not a file\n"


def test_the_installed_command_runs_in_the_repository() -> None:
    # The real entry point, in a fresh process, from the repo root (as in the README).
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("policies.yaml: OK (")
