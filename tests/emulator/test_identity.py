"""Entra side of the emulator: real msal obtains tokens; the admin API refuses bad ones."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from reconciler.emulator import Emulator
from tests.emulator.conftest import SCOPE, AdminClient, msal_app, raw_body, session_for

pytestmark = pytest.mark.integration


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_msal_secret_token_has_exchange_claims(emu: Emulator) -> None:
    result = msal_app(emu).acquire_token_for_client(scopes=SCOPE)
    claims = _claims(result["access_token"])
    assert jwt.get_unverified_header(result["access_token"])["alg"] == "RS256"
    assert claims["aud"] == "https://outlook.office365.com"
    assert claims["tid"] == emu.tenant_id
    assert claims["appid"] == emu.app("writer").client_id
    assert claims["roles"] == ["Exchange.ManageAsApp"]
    assert claims["wids"] == ["29232cdf-9323-42fd-ade2-1d097af3e4de"]
    assert claims["appidacr"] == "1"
    assert claims["exp"] > time.time() + 3000


def test_msal_certificate_sha1_thumbprint(emu: Emulator) -> None:
    pem = emu.app("writer").certificate.path.read_text()
    cert = x509.load_pem_x509_certificate(pem.encode())
    credential = {"private_key": pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex()}
    result = msal_app(emu, credential=credential).acquire_token_for_client(scopes=SCOPE)
    assert _claims(result["access_token"])["appidacr"] == "2"


def test_msal_certificate_sha256_thumbprint_ps256(emu: Emulator) -> None:
    pem = emu.app("reader").certificate.path.read_text()
    credential = {"private_key": pem, "public_certificate": pem}
    result = msal_app(emu, "reader", credential=credential).acquire_token_for_client(scopes=SCOPE)
    assert "access_token" in result, result.get("error_description")


def test_certificate_of_another_app_is_refused(emu: Emulator) -> None:
    pem = emu.app("reader").certificate.path.read_text()
    cert = x509.load_pem_x509_certificate(pem.encode())
    credential = {"private_key": pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex()}
    result = msal_app(emu, "writer", credential=credential).acquire_token_for_client(scopes=SCOPE)
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS700027:")


def test_msal_federated_assertion(emu: Emulator) -> None:
    env = emu.connection_env("writer", credential="federated")
    with open(env["AZURE_FEDERATED_TOKEN_FILE"]) as fh:
        assertion = fh.read()
    result = msal_app(
        emu, credential={"client_assertion": lambda: assertion}
    ).acquire_token_for_client(scopes=SCOPE)
    assert "access_token" in result, result.get("error_description")


def test_federated_assertion_with_wrong_subject_is_refused(emu: Emulator) -> None:
    assertion = emu.issue_federated_token(subject="repo:someone/else:ref:refs/heads/main")
    result = msal_app(
        emu, credential={"client_assertion": lambda: assertion}
    ).acquire_token_for_client(scopes=SCOPE)
    assert result["error"] == "invalid_request"
    assert "AADSTS700213" in result["error_description"]


def test_wrong_secret(emu: Emulator) -> None:
    result = msal_app(emu, credential="not-the-secret").acquire_token_for_client(scopes=SCOPE)
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


def test_unknown_client_and_bad_scope(emu: Emulator) -> None:
    session = session_for(emu)
    url = f"{emu.endpoint}/{emu.tenant_id}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": "00000000-0000-0000-0000-000000000001",
        "client_secret": "x",
        "scope": SCOPE[0],
    }
    response = session.post(url, data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    form.update(client_id=emu.app("writer").client_id, client_secret=emu.app("writer").secret)
    response = session.post(url, data={**form, "scope": "https://outlook.office365.com"})
    assert response.json()["error"] == "invalid_scope"


def test_unknown_tenant_discovery_fails(emu: Emulator) -> None:
    response = session_for(emu).get(
        f"{emu.endpoint}/fabrikam.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    )
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_instance_discovery_answer(emu: Emulator) -> None:
    response = session_for(emu).get(
        f"{emu.endpoint}/common/discovery/instance",
        params={
            "api-version": "1.1",
            "authorization_endpoint": f"{emu.authority}/oauth2/v2.0/authorize",
        },
    )
    assert response.json()["tenant_discovery_endpoint"] == (
        f"{emu.endpoint}/{emu.tenant_id}/v2.0/.well-known/openid-configuration"
    )


def test_msal_with_domain_authority(emu: Emulator) -> None:
    import msal

    app = msal.ConfidentialClientApplication(
        emu.app("writer").client_id,
        authority=f"{emu.endpoint}/{emu.tenant_domain}",
        client_credential=emu.app("writer").secret,
        instance_discovery=False,
        http_client=session_for(emu),
    )
    assert "access_token" in app.acquire_token_for_client(scopes=SCOPE)


# ---------------------------------------------------------------- admin API auth failures
def _assert_401(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_missing_token_is_401_with_empty_body(client: AdminClient) -> None:
    response = client.session.post(client.url, json={"CmdletInput": {"CmdletName": "Get-User"}})
    _assert_401(response)


def test_expired_token(client: AdminClient, emu: Emulator) -> None:
    past = int(time.time()) - 7200
    token = emu.issue_access_token(iat=past, nbf=past, exp=past + 3600)
    response = client.post("Get-OrganizationConfig", token=token)
    _assert_401(response)
    assert "token is expired" in response.headers["WWW-Authenticate"]


def test_bad_signature(client: AdminClient, emu: Emulator) -> None:
    token = emu.issue_access_token()
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    _assert_401(client.post("Get-OrganizationConfig", token=forged))


def test_wrong_audience_graph_token(client: AdminClient, emu: Emulator) -> None:
    result = msal_app(emu).acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert _claims(result["access_token"])["aud"] == "https://graph.microsoft.com"
    _assert_401(client.post("Get-OrganizationConfig", token=result["access_token"]))


def test_another_tenants_token(client: AdminClient, emu: Emulator) -> None:
    token = emu.issue_access_token(tid="11111111-2222-3333-4444-555555555555")
    _assert_401(client.post("Get-OrganizationConfig", token=token))


def test_unknown_tenant_in_path(emu: Emulator, writer_token: str) -> None:
    other = AdminClient(emu, writer_token, tenant="contoso.com")  # a vanity domain
    _assert_401(other.post("Get-OrganizationConfig"))


def test_tenant_by_domain_works(emu: Emulator, writer_token: str) -> None:
    by_domain = AdminClient(emu, writer_token, tenant=emu.tenant_domain)
    assert by_domain.post("Get-OrganizationConfig").status_code == 200


def test_no_permission_app_gets_token_then_401(emu: Emulator, client: AdminClient) -> None:
    result = msal_app(emu, "no_permission").acquire_token_for_client(scopes=SCOPE)
    assert "roles" not in _claims(result["access_token"])
    _assert_401(client.post("Get-User", token=result["access_token"]))


def test_no_role_app_is_403(emu: Emulator, client: AdminClient) -> None:
    result = msal_app(emu, "no_role").acquire_token_for_client(scopes=SCOPE)
    response = client.post("Get-User", token=result["access_token"])
    assert response.status_code == 403
    assert "The role assigned to application" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("cmdlet", "parameters"),
    [
        ("Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None}),
        ("New-AuthenticationPolicy", {"Name": "Reader made this"}),
        ("Remove-AuthenticationPolicy", {"Identity": "Legacy 2018 Policy"}),
        ("Set-OrganizationConfig", {"DefaultAuthenticationPolicy": None}),
    ],
)
def test_reader_cannot_write(
    reader: AdminClient, emu: Emulator, cmdlet: str, parameters: dict
) -> None:
    response = reader.post(cmdlet, parameters)
    assert response.status_code == 403
    assert response.headers["Content-Encoding"] == "gzip"
    assert raw_body(response) == b"\x00" * 64
    assert emu.stats()["writes_changed_state"] == 0
    assert emu.stats()["requests"][cmdlet] == {"403": 1}


def test_reader_can_read(reader: AdminClient) -> None:
    assert reader.ok("Get-AuthenticationPolicy")["value"]


def test_unknown_cmdlet_is_403_nul_gzip(client: AdminClient) -> None:
    response = client.post("Get-Mailbox")
    assert response.status_code == 403
    assert response.headers["Content-Encoding"] == "gzip"
    assert raw_body(response) == b"\x00" * 64


def test_unknown_cmdlet_empty_body_setting(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(forbidden_body="empty")
    response = client.post("Get-Mailbox")
    assert (response.status_code, response.content) == (403, b"")


def test_revoked_app(emu: Emulator, client: AdminClient) -> None:
    emu.set_faults(revoked_apps=["writer"])
    _assert_401(client.post("Get-OrganizationConfig"))
    result = msal_app(emu).acquire_token_for_client(scopes=SCOPE)
    assert result["error"] == "invalid_client"
    emu.set_faults(revoked_apps=[])
    assert client.post("Get-OrganizationConfig").status_code == 200


def test_tokens_expiring_early(emu: Emulator, client: AdminClient) -> None:
    emu.set_faults(token_early_expiry_seconds=0)
    response = client.post("Get-OrganizationConfig")
    _assert_401(response)


def test_short_token_lifetime(emu: Emulator) -> None:
    emu.set_faults(token_lifetime_seconds=5)
    result = msal_app(emu).acquire_token_for_client(scopes=SCOPE)
    assert result["expires_in"] == 5
