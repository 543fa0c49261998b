"""Connection settings from environment and flags: precedence, validation, one-line errors."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from reconciler.errors import ConnectionSettingsError
from reconciler.tenant.connect import add_connection_arguments, connection_settings, open_tenant
from reconciler.tenant.exo.settings import CLOUDS

ROOT = Path(__file__).resolve().parents[2]
TENANT = "contoso.onmicrosoft.com"
CLIENT = "11111111-2222-3333-4444-555555555555"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    return parser.parse_args(list(argv))


def env(**extra: str) -> dict[str, str]:
    base = {
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT,
        "AZURE_CLIENT_SECRET": "s3cr3t-value",
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v != "-"}


def test_defaults_to_commercial_cloud() -> None:
    settings = connection_settings(parse(), env())
    assert settings.tenant == TENANT
    assert settings.client_id == CLIENT
    assert settings.credential.kind == "secret"
    assert settings.authority == f"https://login.microsoftonline.com/{TENANT}"
    assert settings.adminapi_base == f"https://outlook.office365.com/adminapi/beta/{TENANT}"
    assert settings.token_scope == "https://outlook.office365.com/.default"


@pytest.mark.parametrize(
    ("cloud", "authority", "api"),
    [
        ("gcc-high", "https://login.microsoftonline.us", "https://outlook.office365.us"),
        ("dod", "https://login.microsoftonline.us", "https://outlook-dod.office365.us"),
        ("china", "https://login.chinacloudapi.cn", "https://partner.outlook.cn"),
    ],
)
def test_clouds(cloud: str, authority: str, api: str) -> None:
    settings = connection_settings(parse(), env(AUTHPOLICY_CLOUD=cloud))
    assert settings.authority == f"{authority}/{TENANT}"
    assert settings.adminapi_base == f"{api}/adminapi/beta/{TENANT}"
    assert settings.token_scope == f"{api}/.default"
    assert set(CLOUDS) == {"commercial", "gcc-high", "dod", "china"}


def test_unknown_cloud() -> None:
    with pytest.raises(ConnectionSettingsError) as err:
        connection_settings(parse(), env(AUTHPOLICY_CLOUD="moon"))
    assert str(err.value) == (
        "AUTHPOLICY_CLOUD='moon' is not a known cloud; use one of: commercial, gcc-high, dod, china"
    )


def test_endpoint_replaces_both_hosts_and_flags_override_env(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = connection_settings(
        parse("--endpoint", "https://127.0.0.1:8443/", "--tenant-id", "fabrikam.onmicrosoft.com"),
        env(AUTHPOLICY_ENDPOINT="https://10.0.0.1:1", AUTHPOLICY_CA_BUNDLE=str(ca)),
    )
    assert settings.authority == "https://127.0.0.1:8443/fabrikam.onmicrosoft.com"
    assert settings.adminapi_base == "https://127.0.0.1:8443/adminapi/beta/fabrikam.onmicrosoft.com"
    assert settings.token_scope == "https://outlook.office365.com/.default"
    assert settings.ca_bundle == str(ca)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1:8443", "must be an https:// URL"),
        ("https://127.0.0.1:8443/adminapi", "must be a base URL"),
        ("https://user:pw@127.0.0.1", "must not contain a user name or password"),
        ("https://127.0.0.1:notaport", "is not a valid URL"),
    ],
)
def test_bad_endpoints(value: str, message: str) -> None:
    with pytest.raises(ConnectionSettingsError, match=message):
        connection_settings(parse(), env(AUTHPOLICY_ENDPOINT=value))


def test_missing_tenant_and_client() -> None:
    with pytest.raises(ConnectionSettingsError) as err:
        connection_settings(parse(), env(AZURE_TENANT_ID="-"))
    assert str(err.value) == (
        "AZURE_TENANT_ID is not set: set it (or --tenant-id) to the tenant GUID or the initial "
        "*.onmicrosoft.com domain"
    )
    with pytest.raises(ConnectionSettingsError, match="AZURE_CLIENT_ID is not set"):
        connection_settings(parse(), env(AZURE_CLIENT_ID="-"))
    with pytest.raises(ConnectionSettingsError, match="neither a tenant GUID nor a domain"):
        connection_settings(parse(), env(AZURE_TENANT_ID="not a tenant"))


def test_no_credential() -> None:
    with pytest.raises(ConnectionSettingsError) as err:
        connection_settings(parse(), env(AZURE_CLIENT_SECRET="-"))
    assert str(err.value) == (
        "no credential: set one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
        "AZURE_FEDERATED_TOKEN_FILE (secrets never go on the command line)"
    )


def test_several_credentials_need_a_choice(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(ConnectionSettingsError) as err:
        connection_settings(parse(), env(AZURE_FEDERATED_TOKEN_FILE=str(token)))
    assert str(err.value) == (
        "several credentials are set (AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE); keep one, "
        "or choose with --credential secret|certificate|federated"
    )
    chosen = connection_settings(
        parse("--credential", "federated"), env(AZURE_FEDERATED_TOKEN_FILE=str(token))
    )
    assert chosen.credential.kind == "federated"
    assert chosen.credential.path == str(token)


def test_certificate_flag_overrides_env() -> None:
    settings = connection_settings(
        parse("--certificate", "/x/flag.pem"),
        env(AZURE_CLIENT_SECRET="-", AZURE_CLIENT_CERTIFICATE_PATH="/x/env.pem"),
    )
    assert settings.credential.kind == "certificate"
    assert settings.credential.path == "/x/flag.pem"
    assert settings.credential.origin == "--certificate"


def test_no_flag_takes_a_secret_value() -> None:
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    flags = {opt for action in parser._actions for opt in action.option_strings}
    assert not any(("secret" in f or "password" in f) and not f.endswith("-file") for f in flags)
    assert "--client-secret-file" in flags


def test_missing_ca_bundle_file(tmp_path: Path) -> None:
    with pytest.raises(ConnectionSettingsError) as err:
        connection_settings(parse(), env(AUTHPOLICY_CA_BUNDLE=str(tmp_path / "none.pem")))
    assert (
        str(err.value) == f"AUTHPOLICY_CA_BUNDLE={tmp_path / 'none.pem'}: the file does not exist"
    )


def test_open_tenant_reads_the_credential_up_front(tmp_path: Path) -> None:
    with pytest.raises(ConnectionSettingsError, match="the certificate file does not exist"):
        open_tenant(
            parse(),
            env(AZURE_CLIENT_SECRET="-", AZURE_CLIENT_CERTIFICATE_PATH=str(tmp_path / "c.pem")),
        )


def test_open_tenant_with_bad_ca_bundle(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConnectionSettingsError) as err:
        open_tenant(
            parse(), env(AUTHPOLICY_CA_BUNDLE=str(bad), AUTHPOLICY_ENDPOINT="https://127.0.0.1:1")
        )
    assert str(err.value) == f"AUTHPOLICY_CA_BUNDLE={bad}: not a PEM file of CA certificates"


def test_unreachable_endpoint_says_so() -> None:
    import socket

    from reconciler.errors import AuthenticationError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tenant = open_tenant(parse(), env(AUTHPOLICY_ENDPOINT=f"https://127.0.0.1:{port}"))
    with pytest.raises(AuthenticationError) as err:
        tenant.read_users(["x"])  # type: ignore[attr-defined]
    assert str(err.value) == (
        f"cannot reach the Entra ID authority https://127.0.0.1:{port}/{TENANT} "
        "(ConnectionRefusedError); check AUTHPOLICY_ENDPOINT / AUTHPOLICY_CLOUD and the network"
    )


@pytest.mark.parametrize(
    "variable",
    ["AZURE_TENANT_ID", "AUTHPOLICY_ENDPOINT", "AZURE_CLIENT_CERTIFICATE_PATH", "AUTHPOLICY_CLOUD"],
)
def test_a_secret_pasted_into_another_variable_never_comes_back(
    variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler import cli

    secret = "Xy8Q~abcdefghijklmnopqrstuvwxyz0123456789"
    for key in list(os.environ):
        if key.startswith(("AZURE_", "AUTHPOLICY_")):
            monkeypatch.delenv(key)
    env = {
        "AZURE_TENANT_ID": "contoso.onmicrosoft.com",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_CLIENT_CERTIFICATE_PATH": "/nonexistent/app.pem",
        variable: secret,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["drift", "-c", str(ROOT / "policies.yaml")]) == 1
    err = capsys.readouterr().err
    assert secret not in err and secret[:12] not in err
    assert err.startswith(f"error: {variable}")
    assert f"(the value is not shown: {len(secret)} characters)" in err
    # And when the same secret is also where it belongs, the redactor removes it everywhere.
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    monkeypatch.delenv("AZURE_CLIENT_CERTIFICATE_PATH", raising=False)
    if variable != "AZURE_CLIENT_CERTIFICATE_PATH":
        assert cli.main(["drift", "-c", str(ROOT / "policies.yaml")]) == 1
        assert secret not in capsys.readouterr().err


def test_a_ca_bundle_that_is_a_fifo_or_a_directory_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        env = {
            "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": CLIENT,
            "AZURE_CLIENT_SECRET": "s3cret-value",
            "AUTHPOLICY_CA_BUNDLE": str(path),
        }
        with pytest.raises(ConnectionSettingsError) as err:
            connection_settings(parse(), env)
        assert str(err.value) == (
            f"AUTHPOLICY_CA_BUNDLE={path}: not a regular file (a directory, FIFO or device); "
            "name the CA's PEM file"
        )


def test_a_ca_bundle_that_is_a_fifo_or_a_directory_is_refused_without_hanging(
    tmp_path: Path,
) -> None:
    import os

    from reconciler.errors import ConnectionSettingsError
    from reconciler.tenant.exo.transport import build_ssl_context

    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(ConnectionSettingsError, match="not a regular file"):
            build_ssl_context(str(path), only_ca_bundle=True)
