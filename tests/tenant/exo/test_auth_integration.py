"""msal against the emulator over HTTPS: every credential, every auth failure's message."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from reconciler.errors import AuthenticationError, ConnectionSettingsError
from reconciler.model import SnapshotNeeds
from reconciler.tenant.connect import add_connection_arguments, open_tenant
from reconciler.tenant.exo.errors import ExoPermissionError
from tests.tenant.exo import certs
from tests.tenant.exo.conftest import USERS, connect

pytestmark = pytest.mark.integration


def org_name(emu: Emulator, env: dict[str, str]) -> str | None:
    return connect(env).facts().initial_domain


@pytest.mark.parametrize("credential", ["secret", "certificate", "federated"])
def test_each_credential_reads_the_tenant(emu: Emulator, credential: str) -> None:
    tenant = connect(emu.connection_env(app="writer", credential=credential))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    assert len(snapshot.users) == USERS
    assert tenant.facts().initial_domain == emu.tenant_domain
    assert tenant.facts().tenant_guid == emu.tenant_id
    assert tenant.facts().matches(emu.tenant_domain)
    assert emu.stats()["token_requests"] == {"200": 1}


def test_tenant_by_initial_domain(emu: Emulator) -> None:
    env = emu.connection_env(app="reader")
    env["AZURE_TENANT_ID"] = emu.tenant_domain
    tenant = connect(env)
    assert tenant.facts().initial_domain == emu.tenant_domain
    assert tenant.facts().matches(emu.tenant_id)


def test_token_is_cached_across_calls(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    for _ in range(3):
        tenant.facts()
        tenant.read_users(["00000000-0000-0000-0000-000000000000"])
    assert emu.stats()["token_requests"] == {"200": 1}


def test_pem_certificate_with_password(emu: Emulator, tmp_path: Path) -> None:
    env = emu.connection_env(app="writer", credential="certificate")
    # Re-wrap the emulator's certificate and key as a password-protected PFX.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = Path(env["AZURE_CLIENT_CERTIFICATE_PATH"]).read_bytes()
    key = serialization.load_pem_private_key(data, None)
    cert = x509.load_pem_x509_certificates(data)[0]
    pfx = certs.write_pfx(tmp_path / "app.pfx", key, cert, b"pfx-pass-1")  # type: ignore[arg-type]
    env["AZURE_CLIENT_CERTIFICATE_PATH"] = str(pfx)
    env["AZURE_CLIENT_CERTIFICATE_PASSWORD"] = "pfx-pass-1"
    assert org_name(emu, env) == emu.tenant_domain


def test_federated_token_file_is_reread_when_rotated(emu: Emulator) -> None:
    env = emu.connection_env(app="writer", credential="federated")
    token_file = Path(env["AZURE_FEDERATED_TOKEN_FILE"])
    tenant = connect(env)
    tenant.facts()
    # The platform rotates the file; a token for another subject must now be what is sent.
    token_file.write_text(emu.issue_federated_token(subject="repo:evil/fork:ref:refs/heads/x"))
    tenant.client.tokens.invalidate(tenant.client.tokens.get())
    with pytest.raises(AuthenticationError) as err:
        tenant.read_users(["00000000-0000-0000-0000-000000000000"])
    assert "(AADSTS700213)" in str(err.value)
    assert "no federated identity credential" in str(err.value)
    token_file.write_text(emu.issue_federated_token())
    assert tenant.read_users(["00000000-0000-0000-0000-000000000000"]) == {}


def _error_for(env: dict[str, str]) -> str:
    with pytest.raises((AuthenticationError, ConnectionSettingsError)) as err:
        tenant = connect(env)
        tenant.read_snapshot(SnapshotNeeds())
    return str(err.value)


def test_wrong_secret(emu: Emulator) -> None:
    env = emu.connection_env(app="writer")
    env["AZURE_CLIENT_SECRET"] = "not-the-secret-1234"
    message = _error_for(env)
    assert message == (
        "Entra ID refused the token request (AADSTS7000215): the client secret is wrong for app "
        f"{env['AZURE_CLIENT_ID']}; check AZURE_CLIENT_SECRET"
    )


def test_unknown_client_id(emu: Emulator) -> None:
    env = emu.connection_env(app="writer")
    env["AZURE_CLIENT_ID"] = "99999999-9999-9999-9999-999999999999"
    message = _error_for(env)
    assert message.startswith("Entra ID refused the token request (AADSTS700016)")
    assert "is not registered in tenant" in message


def test_wrong_tenant(emu: Emulator) -> None:
    env = emu.connection_env(app="writer")
    env["AZURE_TENANT_ID"] = "fabrikam.onmicrosoft.com"
    message = _error_for(env)
    assert "fabrikam.onmicrosoft.com" in message
    assert "AZURE_TENANT_ID" in message
    assert env["AZURE_CLIENT_SECRET"] not in message


def test_certificate_not_registered(emu: Emulator, tmp_path: Path) -> None:
    env = emu.connection_env(app="writer", credential="certificate")
    key = certs.make_key()
    env["AZURE_CLIENT_CERTIFICATE_PATH"] = str(
        certs.write_pem(tmp_path / "other.pem", key, certs.make_cert(key))
    )
    message = _error_for(env)
    assert message.startswith("Entra ID refused the token request (AADSTS700027)")
    assert "upload the certificate's public part" in message


def test_expired_federated_token(emu: Emulator) -> None:
    env = emu.connection_env(app="writer", credential="federated")
    Path(env["AZURE_FEDERATED_TOKEN_FILE"]).write_text(emu.issue_federated_token(ttl=-120))
    message = _error_for(env)
    assert message.startswith("Entra ID refused the token request (AADSTS700024)")


def test_no_exchange_permission(emu: Emulator) -> None:
    message = _error_for(emu.connection_env(app="no_permission"))
    assert message == (
        "Exchange refused the token (401): it carries no Exchange.ManageAsApp role; grant the "
        "application permission Exchange.ManageAsApp (Office 365 Exchange Online) to the app and "
        "give admin consent"
    )
    # One refresh and one retry, then the error: two tokens, two 401s.
    assert emu.stats()["token_requests"] == {"200": 2}


def test_no_exchange_role(emu: Emulator) -> None:
    message = _error_for(emu.connection_env(app="no_role"))
    assert message.startswith(
        "Exchange refused Get-AuthenticationPolicy (403): the app has no Exchange directory role; "
        "assign Exchange Administrator (apply) or Global Reader (plan/drift/report) to the app"
    )


def test_read_only_role_cannot_write(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    with pytest.raises(ExoPermissionError) as err:
        tenant.set_default_policy(None)
    assert str(err.value).startswith(
        "Exchange refused Set-OrganizationConfig (403): the app's role does not allow changes"
    )
    assert emu.write_log() == []


def test_revoked_app(emu: Emulator) -> None:
    env = emu.connection_env(app="writer")
    emu.set_faults(revoked_apps=["writer"])
    message = _error_for(env)
    assert message.startswith("Entra ID refused the token request (AADSTS7000222)")


def test_untrusted_ca_is_refused_even_with_requests_ca_bundle(
    emu: Emulator, tmp_path: Path
) -> None:
    env = emu.connection_env(app="writer")
    other_key = certs.make_key()
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(certs.cert_pem(certs.make_cert(other_key, cn="Other CA", ca=True)))
    env["AUTHPOLICY_CA_BUNDLE"] = str(other_ca)
    message = _error_for(env)
    assert message == (
        f"TLS verification of {emu.endpoint}/{emu.tenant_id} failed: its certificate is not "
        "trusted; set AUTHPOLICY_CA_BUNDLE to the CA that signed it (verification cannot be "
        "turned off)"
    )


def test_ca_bundle_is_required_for_the_emulator(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator's CA in REQUESTS_CA_BUNDLE must not be picked up behind our back either.
    env = emu.connection_env(app="writer")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env.pop("AUTHPOLICY_CA_BUNDLE"))
    assert "TLS verification" in _error_for(env)


def test_token_expiring_early_mid_read_is_refreshed(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    tenant.facts()  # token in hand
    # Tokens are refused 1.5 s after issue (iat has whole seconds: 0.5-1.5 s of real life);
    # every request takes 0.5 s, so the read outlives its token at least once.
    emu.set_faults(token_early_expiry_seconds=1.5, latency_base_ms=500)
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    assert len(snapshot.users) == USERS
    assert tenant.client.stats.token_refreshes >= 1
    tokens = int(emu.stats()["token_requests"]["200"])
    # Cursors read side by side may meet the refused token together: each counts a refresh,
    # but the provider fetches one new token for all of them (it drops only the token it gave).
    assert 2 <= tokens <= 1 + tenant.client.stats.token_refreshes


def test_short_lived_tokens_are_renewed_before_they_expire(emu: Emulator) -> None:
    emu.set_faults(token_lifetime_seconds=2, latency_base_ms=400)
    tenant = connect(emu.connection_env(app="reader"))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    assert len(snapshot.users) == USERS
    assert tenant.client.stats.token_refreshes == 0  # never sent an expired one
    assert int(emu.stats()["token_requests"]["200"]) >= 2


def test_secrets_never_in_errors(emu: Emulator) -> None:
    env = emu.connection_env(app="no_permission")
    message = _error_for(env)
    assert env["AZURE_CLIENT_SECRET"] not in message
    assert "eyJ" not in message


def test_open_tenant_with_flags_only(emu: Emulator) -> None:
    env = emu.connection_env(app="writer")
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    args = parser.parse_args(
        [
            "--tenant-id",
            env["AZURE_TENANT_ID"],
            "--client-id",
            env["AZURE_CLIENT_ID"],
            "--endpoint",
            env["AUTHPOLICY_ENDPOINT"],
            "--ca-bundle",
            env["AUTHPOLICY_CA_BUNDLE"],
        ]
    )
    tenant = open_tenant(args, {"AZURE_CLIENT_SECRET": env["AZURE_CLIENT_SECRET"]})
    assert tenant.name == emu.tenant_id


def test_per_request_verify_false_is_ignored(emu: Emulator, tmp_path: Path) -> None:
    import requests

    from reconciler.tenant.exo.transport import make_session

    other_key = certs.make_key()
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(certs.cert_pem(certs.make_cert(other_key, cn="Other CA", ca=True)))
    session = make_session(str(other_ca), only_ca_bundle=True)
    with pytest.raises(requests.exceptions.SSLError):
        session.post(f"{emu.endpoint}/x", verify=False, timeout=5)
    trusted = make_session(str(emu.ca_path), only_ca_bundle=True)
    assert trusted.post(f"{emu.endpoint}/x", verify=False, timeout=5).status_code in (400, 404)
    with pytest.raises(requests.exceptions.InvalidURL, match="only https"):
        trusted.get("http://127.0.0.1:1/", timeout=5)
