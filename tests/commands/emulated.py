"""Shared helpers for command tests that run the real CLI against the emulator over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli
from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.emulator.state import MAILBOX_TYPES

ROOT = Path(__file__).resolve().parents[2]
ROOT_POLICIES = ROOT / "policies.yaml"

SWITCH_OF = {
    "activesync": "AllowBasicAuthActiveSync",
    "autodiscover": "AllowBasicAuthAutodiscover",
    "imap": "AllowBasicAuthImap",
    "mapi": "AllowBasicAuthMapi",
    "offline_address_book": "AllowBasicAuthOfflineAddressBook",
    "outlook_service": "AllowBasicAuthOutlookService",
    "pop": "AllowBasicAuthPop",
    "powershell": "AllowBasicAuthPowershell",
    "reporting_web_services": "AllowBasicAuthReportingWebServices",
    "rpc": "AllowBasicAuthRpc",
    "smtp": "AllowBasicAuthSmtp",
    "web_services": "AllowBasicAuthWebServices",
}


@contextmanager
def emulator(tmp_path: Path, users: int = 300, seed: int = 7) -> Iterator[Emulator]:
    with Emulator(EmulatorSettings(users=users, seed=seed, state_dir=tmp_path / "emu")) as emu:
        yield emu


def connect(monkeypatch: pytest.MonkeyPatch, emu: Emulator, app: str = "writer") -> None:
    """Point the CLI at the emulator, exactly as a user would: environment variables only."""
    for key in (
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in emu.connection_env(app=app).items():
        monkeypatch.setenv(key, value)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `authpolicy ARGV` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expected_exposure(state: dict[str, Any]) -> dict[str, Any]:
    """Who governs whom and who can use Basic SMTP AUTH, computed from the emulator's raw
    state (by GUID, independently of the reconciler's code)."""
    policies = {p["Guid"]: p for p in state["policies"]}
    default = state["organization"].get("DefaultAuthenticationPolicy")
    # Never set by an admin (None): Microsoft's default-off, which the API does not show under
    # the default smtp_default_off=hidden; the report cannot know it, and counts it as exposure.
    org_value = state["transport"]["SmtpClientAuthenticationDisabled"]
    result: dict[str, Any] = {
        "direct": 0,
        "default": 0,
        "none": 0,
        "exposed": set(),
        "unknown": set(),  # exposed only because the org switch is not shown
        "latent": 0,  # the policy allows Basic SMTP but SMTP AUTH is off
    }
    for user in state["users"]:
        guid = user.get("_policy") or None
        via = "direct" if guid else "default" if default else "none"
        result[via] += 1
        policy = policies.get(guid or default) if (guid or default) else None
        allows_smtp = policy is None or bool(policy["AllowBasicAuthSmtp"])
        mailbox = user.get("_smtp_disabled")
        has_mailbox = user["RecipientTypeDetails"] in MAILBOX_TYPES
        if mailbox is not None:
            enabled: bool | None = not mailbox
        else:
            enabled = None if org_value is None else not org_value
        if allows_smtp and has_mailbox and enabled is not False:
            result["exposed"].add(user["UserPrincipalName"])
            if enabled is None:
                result["unknown"].add(user["UserPrincipalName"])
        elif allows_smtp and has_mailbox:
            result["latent"] += 1
    return result
