"""Bad fleet and read-concurrency arguments: one line and exit 1, before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.emulated import run_cli


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["plan", "--tenants", "t.yaml", "--tenant-concurrency", "0"], "at least 1"),
        (["plan", "--tenants", "t.yaml", "--out", "p.json"], "--out cannot be used with --tenants"),
        (["plan", "--tenants", "t.yaml", "-c", "p.yaml"], "-c/--config cannot be used"),
        (["drift", "--tenants", "t.yaml", "--tenant-id", "x"], "--tenant-id cannot be used"),
        (["apply", "--tenants", "t.yaml"], "pass --auto-approve"),
        (["apply", "--tenants", "t.yaml", "p.json", "--auto-approve"], "--plans DIR"),
        (["plan", "--tenants", "missing.yaml"], "missing.yaml: the inventory not found"),
    ],
)
def test_bad_fleet_arguments_are_one_line(
    argv: list[str],
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_read_concurrency_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policies.yaml").write_text("version: 1\npolicies:\n  B: {allow: []}\n")
    monkeypatch.setenv("AZURE_TENANT_ID", "contoso.onmicrosoft.com")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "x")
    monkeypatch.setenv("AUTHPOLICY_READ_CONCURRENCY", "many")
    code, _, err = run_cli(capsys, "plan")
    assert code == 1 and "AUTHPOLICY_READ_CONCURRENCY: expected a whole number" in err
    code, _, err = run_cli(capsys, "plan", "--read-concurrency", "99")
    assert code == 1 and "expected 1 to 16, got 99" in err
