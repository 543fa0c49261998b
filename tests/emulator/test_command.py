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
]


def _serve(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
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
    )


def test_serve_prints_env_and_saves_on_ctrl_c(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--control")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(6)]
        pairs = dict(line.split("=", 1) for line in lines[:5])
        assert list(pairs) == KEYS
        assert lines[5].startswith("# tenant contoso.onmicrosoft.com; state file ")
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
        response = session.post(
            f"{pairs['AUTHPOLICY_ENDPOINT']}/adminapi/beta/{pairs['AZURE_TENANT_ID']}/InvokeCommand",
            json={
                "CmdletInput": {
                    "CmdletName": "Set-User",
                    "Parameters": {"Identity": "breakglass", "AuthenticationPolicy": None},
                }
            },
            headers={"Authorization": f"Bearer {token}"},
        )
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
