"""`authpolicy emulator serve` (reconciler/commands/emulator.py), run as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import msal
import pytest

from tests.emulator.conftest import SCOPE, TrustingSession

pytestmark = pytest.mark.integration

KEYS = [
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AUTHPOLICY_ENDPOINT",
    "AUTHPOLICY_CA_BUNDLE",
    "AUTHPOLICY_TRUSTED_HOSTS",
]


def _serve(tmp_path: Path, *extra: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload]
        [
            sys.executable,
            "-m",
            "reconciler",
            "emulator",
            "serve",
            "--users",
            "40",
            "--state-dir",
            str(tmp_path),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **popen,
    )


def test_ctrl_c_stops_serve_even_when_sigint_was_ignored_by_its_parent(tmp_path: Path) -> None:
    # A shell starting a background job hands it SIGINT ignored; serve must still stop on it.
    proc = _serve(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout is not None
        for _ in range(7):  # the connection lines: it is listening
            proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "# state saved to" in err


def test_serve_prints_env_and_saves_on_ctrl_c(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--control")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(7)]
        pairs = dict(line.split("=", 1) for line in lines[:6])
        assert list(pairs) == KEYS
        port = pairs["AUTHPOLICY_ENDPOINT"].rsplit(":", 1)[1]
        assert pairs["AUTHPOLICY_TRUSTED_HOSTS"] == f"127.0.0.1:{port},localhost:{port}"
        assert lines[6].startswith("# tenant contoso.onmicrosoft.com; state file ")
        assert pairs["AUTHPOLICY_ENDPOINT"].startswith("https://127.0.0.1:")
        session = TrustingSession()
        session.verify = pairs["AUTHPOLICY_CA_BUNDLE"]
        app = msal.ConfidentialClientApplication(
            pairs["AZURE_CLIENT_ID"],
            authority=f"{pairs['AUTHPOLICY_ENDPOINT']}/{pairs['AZURE_TENANT_ID']}",
            client_credential=pairs["AZURE_CLIENT_SECRET"],
            instance_discovery=False,
            http_client=session,
        )
        token = app.acquire_token_for_client(scopes=SCOPE)["access_token"]
        send = {
            "json": {
                "CmdletInput": {
                    "CmdletName": "Set-User",
                    "Parameters": {"Identity": "breakglass", "AuthenticationPolicy": None},
                }
            },
            "headers": {"Authorization": f"Bearer {token}"},
            "allow_redirects": False,
        }
        url = (
            f"{pairs['AUTHPOLICY_ENDPOINT']}/adminapi/beta/{pairs['AZURE_TENANT_ID']}/InvokeCommand"
        )
        first = session.post(url, **send)  # type: ignore[arg-type]
        assert first.status_code == 307  # redirect_to_backend, on by default
        assert first.headers["Location"] == url.replace("127.0.0.1", "localhost")
        response = session.post(first.headers["Location"], **send)  # type: ignore[arg-type]
        assert response.status_code == 200
        assert session.get(f"{pairs['AUTHPOLICY_ENDPOINT']}/_emulator/stats").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    state = json.loads((tmp_path / "tenant.json").read_text())
    breakglass = next(u for u in state["users"] if u["Name"] == "breakglass")
    assert breakglass["_policy"] is None
    assert pairs["AZURE_CLIENT_SECRET"] not in err


def test_serve_refuses_non_loopback(tmp_path: Path) -> None:
    from reconciler.cli import main

    assert main(["emulator", "serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path)]) == 1


def test_emulator_without_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.cli import main

    assert main(["emulator"]) == 1
    assert "usage: authpolicy emulator serve" in capsys.readouterr().err


def test_set_overrides_any_setting_and_names_a_typo(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--set", "redirect_to_backnd=false")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == (
        "error: cannot start the emulator: --set redirect_to_backnd: unknown setting "
        "(did you mean redirect_to_backend?); see docs/emulator.md"
    )
    proc = _serve(tmp_path, "--set", "cursor_affinity=sticky")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "cursor_affinity must be one of lenient, strict" in err


def test_parse_set_reads_json_or_a_bare_string() -> None:
    from reconciler.commands.emulator import parse_set

    assert parse_set(
        ["redirect_to_backend=false", "next_link_style=guid", 'set_user_refuses=["MailUser"]']
    ) == {
        "redirect_to_backend": False,
        "next_link_style": "guid",
        "set_user_refuses": ("MailUser",),
    }
