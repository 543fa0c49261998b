"""`authpolicy doctor` against the emulator: one line per check, the fix on failure, no write."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.emulator import Emulator, EmulatorSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=60, seed=4, state_dir=tmp_path_factory.mktemp("doctor"), save_on_exit=False
    )
    with Emulator(settings) as emulator:
        yield emulator


def _doctor(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    for key in list(os.environ):
        if key.startswith(("AZURE_", "AUTHPOLICY_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = cli.main(["doctor"])
    return code, capsys.readouterr().out.splitlines()


def test_a_writer_is_ready_and_nothing_is_written(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.reset_stats()
    code, lines = _doctor(emu.connection_env("writer"), monkeypatch, capsys)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "ok    credentials",
        "ok    token",
        "ok    cloud",
        "ok    Exchange role",
        "ok    read access",
        "ok    Graph sign-in log",
        "ok    Graph Conditional Access",
    ]
    assert lines[3] == "ok    Exchange role: Exchange Administrator: plan, drift, report and apply"
    assert lines[-1] == "doctor: ready (7 checks, 0 warning(s)); nothing was written"
    stats = emu.stats()
    assert stats["write_log"] == [] and stats["writes_noop"] == 0
    assert all(not c.startswith(("Set-", "New-", "Remove-")) for c in stats["requests"])


def test_a_reader_is_told_apply_needs_exchange_administrator(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _doctor(emu.connection_env("reader"), monkeypatch, capsys)
    assert code == 0
    assert (
        "warn  Exchange role: Global Reader: read only (plan, drift, report); apply needs "
        "Exchange Administrator"
    ) in lines


@pytest.mark.parametrize(
    ("app", "line"),
    [
        (
            "no_role",
            "FAIL  Exchange role: the app holds no Exchange directory role; assign Exchange "
            "Administrator (apply) or Global Reader (plan, drift, report) to its service principal",
        ),
        (
            "no_permission",
            "FAIL  Exchange role: the app has no Exchange.ManageAsApp application permission; add "
            "it (Office 365 Exchange Online API) and grant admin consent",
        ),
    ],
)
def test_a_missing_role_fails_with_the_fix(
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app: str,
    line: str,
) -> None:
    code, lines = _doctor(emu.connection_env(app), monkeypatch, capsys)
    assert code == 1
    assert lines[-2:] == [line, "doctor: 1 check(s) failed (Exchange role); fix them first"]


def test_bad_credentials_and_the_wrong_cloud_fail_early(
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    env = emu.connection_env("writer")
    env.pop("AZURE_CLIENT_SECRET")
    code, lines = _doctor(env, monkeypatch, capsys)
    assert code == 1
    assert lines[0] == (
        "FAIL  credentials: no credential: set one of AZURE_CLIENT_SECRET, "
        "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE (secrets never go on the "
        "command line)"
    )
    code, lines = _doctor(
        {**emu.connection_env("writer"), "AUTHPOLICY_CLOUD": "gcc-high"}, monkeypatch, capsys
    )
    assert code == 1
    assert lines[1].startswith("FAIL  token: Entra ID refused the token request (AADSTS500011)")
    assert "check AUTHPOLICY_CLOUD" in lines[1]


def test_no_licence_for_the_sign_in_log_is_a_warning_with_the_reason(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.set_faults(graph_premium_licence=False)
    try:
        code, lines = _doctor(emu.connection_env("writer"), monkeypatch, capsys)
    finally:
        emu.set_faults(graph_premium_licence=True)
    assert code == 0
    assert lines[5] == (
        "warn  Graph sign-in log: the tenant has no Entra ID P1/P2 licence; the sign-in log "
        "needs one; plans will say why evidence is missing"
    )
    assert lines[6] == (
        "warn  Graph Conditional Access: the tenant has no Entra ID P1/P2 licence; Conditional "
        "Access needs one; report --baseline leaves CIS 5.2.2.3 not assessed"
    )
