"""Credential loading: PEM, PFX, secrets, federated token files; clear one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from reconciler.errors import ConnectionSettingsError
from reconciler.tenant.exo.credentials import (
    federated_token_reader,
    load_certificate,
    msal_client_credential,
    read_secret,
)
from reconciler.tenant.exo.settings import CredentialSource
from tests.tenant.exo import certs


@pytest.fixture(scope="module")
def key_and_cert():
    key = certs.make_key()
    return key, certs.make_cert(key)


def test_pem_with_cert_and_key_gives_sha1_thumbprint(tmp_path: Path, key_and_cert) -> None:
    key, cert = key_and_cert
    path = certs.write_pem(tmp_path / "app.pem", key, cert)
    loaded = load_certificate(str(path), None, "AZURE_CLIENT_CERTIFICATE_PATH")
    assert loaded.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert loaded.public_certificate_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in loaded.private_key_pem
    assert set(loaded.for_msal()) == {"private_key", "thumbprint", "public_certificate"}
    assert "PRIVATE" not in repr(loaded)


def test_pem_key_first_then_cert_also_loads(tmp_path: Path, key_and_cert) -> None:
    key, cert = key_and_cert
    path = tmp_path / "app.pem"
    path.write_bytes(certs.key_pem(key) + certs.cert_pem(cert))
    assert load_certificate(str(path), None, "X").thumbprint


def test_encrypted_pem_needs_password(tmp_path: Path, key_and_cert) -> None:
    key, cert = key_and_cert
    path = certs.write_pem(tmp_path / "enc.pem", key, cert, password=b"s3cret-pw")
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), None, "AZURE_CLIENT_CERTIFICATE_PATH")
    assert str(err.value) == (
        f"AZURE_CLIENT_CERTIFICATE_PATH={path}: the private key is encrypted; set "
        "AZURE_CLIENT_CERTIFICATE_PASSWORD"
    )
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), "wrong-pw", "AZURE_CLIENT_CERTIFICATE_PATH")
    assert "wrong password" in str(err.value)
    assert "wrong-pw" not in str(err.value)
    assert load_certificate(str(path), "s3cret-pw", "X").thumbprint


def test_pfx_with_password(tmp_path: Path, key_and_cert) -> None:
    key, cert = key_and_cert
    path = certs.write_pfx(tmp_path / "app.pfx", key, cert, b"pfx-pass")
    loaded = load_certificate(str(path), "pfx-pass", "AZURE_CLIENT_CERTIFICATE_PATH")
    assert loaded.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), "nope-nope", "AZURE_CLIENT_CERTIFICATE_PATH")
    assert str(err.value) == (
        f"AZURE_CLIENT_CERTIFICATE_PATH={path}: cannot open the PFX file: wrong password "
        "(AZURE_CLIENT_CERTIFICATE_PASSWORD)"
    )
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), None, "AZURE_CLIENT_CERTIFICATE_PATH")
    assert "it needs a password: set AZURE_CLIENT_CERTIFICATE_PASSWORD" in str(err.value)


def test_certificate_only_pem_says_key_missing(tmp_path: Path, key_and_cert) -> None:
    _, cert = key_and_cert
    path = tmp_path / "cert-only.pem"
    path.write_bytes(certs.cert_pem(cert))
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), None, "AZURE_CLIENT_CERTIFICATE_PATH")
    assert "has no private key" in str(err.value)


def test_key_only_pem_says_certificate_missing(tmp_path: Path, key_and_cert) -> None:
    key, _ = key_and_cert
    path = tmp_path / "key-only.pem"
    path.write_bytes(certs.key_pem(key))
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), None, "X")
    assert "has a private key but no certificate" in str(err.value)


def test_mismatched_key_and_certificate(tmp_path: Path, key_and_cert) -> None:
    _, cert = key_and_cert
    other = certs.make_key()
    path = certs.write_pem(tmp_path / "mismatch.pem", other, cert)
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), None, "X")
    assert str(err.value) == f"X={path}: no certificate in the file matches its private key"


def test_expired_certificate(tmp_path: Path, key_and_cert) -> None:
    key, _ = key_and_cert
    old = certs.make_cert(key, days=-1, start_days_ago=30)
    path = certs.write_pem(tmp_path / "old.pem", key, old)
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(path), None, "X")
    assert "the certificate expired on" in str(err.value)


def test_missing_unreadable_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(tmp_path / "nope.pem"), None, "AZURE_CLIENT_CERTIFICATE_PATH")
    assert str(err.value) == (
        f"AZURE_CLIENT_CERTIFICATE_PATH={tmp_path / 'nope.pem'}: the certificate file does not "
        "exist; check the path"
    )
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(tmp_path), None, "X")
    assert "is a directory" in str(err.value)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x01\x02 not a certificate")
    with pytest.raises(ConnectionSettingsError) as err:
        load_certificate(str(garbage), None, "X")
    assert str(err.value) == f"X={garbage}: neither a PEM nor a PFX (PKCS#12) certificate file"


def test_secret_from_env_and_file(tmp_path: Path) -> None:
    source = CredentialSource(
        "secret", secret_env="AZURE_CLIENT_SECRET", origin="AZURE_CLIENT_SECRET"
    )
    assert read_secret(source, {"AZURE_CLIENT_SECRET": " abc123 "}) == "abc123"
    with pytest.raises(ConnectionSettingsError) as err:
        read_secret(source, {"AZURE_CLIENT_SECRET": "  "})
    assert str(err.value) == "AZURE_CLIENT_SECRET is empty: set it to the app's client secret"
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("from-a-file\n")
    file_source = CredentialSource("secret", path=str(secret_file), origin="--client-secret-file")
    assert read_secret(file_source, {}) == "from-a-file"


def test_federated_token_file_is_reread_on_every_call(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token-value")
    reader = federated_token_reader(str(token_file), "AZURE_FEDERATED_TOKEN_FILE")
    assert reader() == "first-token-value"
    token_file.write_text("rotated-token-value\n")
    assert reader() == "rotated-token-value"
    token_file.write_text("")
    with pytest.raises(ConnectionSettingsError) as err:
        reader()
    assert (
        str(err.value)
        == f"AZURE_FEDERATED_TOKEN_FILE={token_file}: the federated token file is empty"
    )


def test_msal_credential_for_federated_is_a_callable(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-1")
    source = CredentialSource(
        "federated", path=str(token_file), origin="AZURE_FEDERATED_TOKEN_FILE"
    )
    credential = msal_client_credential(source, {})
    assert isinstance(credential, dict)
    assert callable(credential["client_assertion"])
    token_file.write_text("tok-2")
    assert credential["client_assertion"]() == "tok-2"
    missing = CredentialSource(
        "federated", path=str(tmp_path / "none"), origin="AZURE_FEDERATED_TOKEN_FILE"
    )
    with pytest.raises(ConnectionSettingsError, match="the federated token file does not exist"):
        msal_client_credential(missing, {})
