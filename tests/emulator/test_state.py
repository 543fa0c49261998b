"""Tenant state: save on stop, load on start, atomic writes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.emulator.state import TenantState
from tests.emulator.conftest import AdminClient, prepared_state_dir

pytestmark = pytest.mark.integration


def test_round_trip_through_state_file(emulator: Emulator, tmp_path: Path) -> None:
    state_file = tmp_path / "tenant.json"
    prepared_state_dir(emulator, tmp_path / "dir")
    settings = EmulatorSettings(users=60, seed=4, state_dir=tmp_path / "dir", state_file=state_file)
    with Emulator(settings) as emu:
        client = AdminClient(emu, emu.issue_access_token())
        client.ok("Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None})
        client.ok("New-AuthenticationPolicy", {"Name": "Pilot", "AllowBasicAuthSmtp": True})
        tenant_id = emu.tenant_id
    saved = json.loads(state_file.read_text())
    assert saved["format"] == 1 and len(saved["users"]) == 60
    assert [p.name for p in state_file.parent.iterdir() if p.name.endswith(".tmp")] == []
    # users/seed are ignored once a state file exists: the tenant comes from the file.
    again = EmulatorSettings(users=999, seed=1, state_dir=tmp_path / "dir", state_file=state_file)
    with Emulator(again) as emu:
        client = AdminClient(emu, emu.issue_access_token())
        assert emu.tenant_id == tenant_id
        assert (
            client.ok("Get-User", {"Identity": "breakglass"})["value"][0]["AuthenticationPolicy"]
            is None
        )
        names = [p["Name"] for p in client.ok("Get-AuthenticationPolicy")["value"]]
        assert "Pilot" in names
        assert len(emu.dump_state()["users"]) == 60


def test_ca_and_secrets_reused_under_state_dir(tmp_path: Path) -> None:
    settings = EmulatorSettings(users=5, state_dir=tmp_path, save_on_exit=False)
    with Emulator(settings) as emu:
        ca, secret = emu.ca_path.read_bytes(), emu.app("writer").secret
        client_id = emu.app("writer").client_id
    with Emulator(EmulatorSettings(users=5, state_dir=tmp_path, save_on_exit=False)) as emu:
        assert emu.ca_path.read_bytes() == ca
        assert emu.app("writer").secret == secret
        assert emu.app("writer").client_id == client_id
    assert (tmp_path / "identity" / "apps.json").stat().st_mode & 0o077 == 0


def test_temporary_state_dir_is_removed(tmp_path: Path) -> None:
    emu = Emulator(EmulatorSettings(users=5))
    with emu:
        directory = emu.state_dir
        assert directory.exists()
    assert not directory.exists()


def test_reset_state_restores_the_start(emu: Emulator, client: AdminClient) -> None:
    client.ok("Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None})
    emu.reset_state()
    assert client.ok("Get-User", {"Identity": "breakglass"})["value"][0][
        "AuthenticationPolicy"
    ] == ("Block Basic Auth")
    assert emu.stats()["requests_total"] == 1


def test_bad_state_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "tenant.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"^cannot read tenant state .*tenant.json: "):
        TenantState.load(bad)
    bad.write_text(json.dumps({"format": 1, "tenant": {"id": "x", "domain": "y"}}))
    with pytest.raises(ValueError, match="is malformed: missing 'organization'"):
        TenantState.load(bad)
    bad.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="unsupported tenant state format 99"):
        TenantState.load(bad)


def test_connection_env_shapes(emu: Emulator) -> None:
    secret = emu.connection_env("reader")
    assert set(secret) == {
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AUTHPOLICY_ENDPOINT",
        "AUTHPOLICY_CA_BUNDLE",
        "AUTHPOLICY_TRUSTED_HOSTS",
    }
    cert = emu.connection_env("writer", credential="certificate")
    assert "AZURE_CLIENT_SECRET" not in cert
    assert (
        Path(cert["AZURE_CLIENT_CERTIFICATE_PATH"]).read_text().startswith("-----BEGIN PRIVATE KEY")
    )
    federated = emu.connection_env("writer", credential="federated")
    assert Path(federated["AZURE_FEDERATED_TOKEN_FILE"]).read_text().count(".") == 2
    with pytest.raises(ValueError, match="has no certificate credential"):
        emu.connection_env("no_role", credential="certificate")
    with pytest.raises(ValueError, match="unknown app 'boss'"):
        emu.connection_env("boss")


def test_configurable_apps(emulator: Emulator, tmp_path: Path) -> None:
    prepared_state_dir(emulator, tmp_path)
    apps = {
        "admin": {"roles": ["global_administrator"], "certificate": True},
        "auditor": {"roles": ["security_reader"]},
        "writer": {"roles": ["global_reader"]},  # override a built-in app
    }
    settings = EmulatorSettings(users=20, state_dir=tmp_path, save_on_exit=False, apps=apps)
    with Emulator(settings) as emu:
        assert emu.app("admin").certificate is not None
        admin = AdminClient(emu, emu.issue_access_token("admin"))
        assert (
            admin.post(
                "Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None}
            ).status_code
            == 200
        )
        auditor = AdminClient(emu, emu.issue_access_token("auditor"))
        assert auditor.post("Get-User").status_code == 403
        demoted = AdminClient(emu, emu.issue_access_token("writer"))
        response = demoted.post(
            "Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None}
        )
        assert response.status_code == 403
    bad = EmulatorSettings(users=5, state_dir=tmp_path, apps={"x": {"roles": ["janitor"]}})
    with pytest.raises(ValueError, match="app 'x': unknown role 'janitor'"):
        Emulator(bad).start()


def test_same_users_and_seed_give_identical_saved_state(emulator: Emulator, tmp_path: Path) -> None:
    saved = []
    for run in ("a", "b"):
        prepared_state_dir(emulator, tmp_path / run)
        target = tmp_path / f"{run}.json"
        settings = EmulatorSettings(users=120, seed=9, state_dir=tmp_path / run, state_file=target)
        with Emulator(settings):
            pass
        saved.append(target.read_bytes())
    assert saved[0] == saved[1]
