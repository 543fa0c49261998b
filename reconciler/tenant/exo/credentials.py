"""Reading the app's credential into the form msal wants.

Three kinds (DESIGN.md, Connection): a client secret, a certificate (PEM holding certificate and
key, or PFX with a password), or a federated token file (workload identity, e.g. GitHub OIDC)
that is re-read at every token request because the platform rotates it.

Every failure is a one-line `ConnectionSettingsError` that names the variable or file and says
what to do; none of them ever contains the secret, the key or the password.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from reconciler.errors import ConnectionSettingsError
from reconciler.tenant.exo.redact import register_secret
from reconciler.tenant.exo.settings import CredentialSource, shown_path

log = logging.getLogger(__name__)

# Credential files are small; a huge file is a wrong path (e.g. a log), not a certificate.
_MAX_CREDENTIAL_FILE = 1_000_000


@dataclass(frozen=True, slots=True, repr=False)
class CertificateCredential:
    """A loaded certificate credential. `repr` never shows the key."""

    private_key_pem: str
    thumbprint: str  # SHA-1, upper-case hex: what Entra ID shows and msal puts in x5t
    public_certificate_pem: str
    subject: str
    not_after: dt.datetime

    def __repr__(self) -> str:
        return f"CertificateCredential(thumbprint={self.thumbprint}, subject={self.subject})"

    def for_msal(self) -> dict[str, str]:
        return {
            "private_key": self.private_key_pem,
            "thumbprint": self.thumbprint,
            "public_certificate": self.public_certificate_pem,
        }


def _read_file(path: str, what: str, origin: str) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > _MAX_CREDENTIAL_FILE:
            raise ConnectionSettingsError(
                f"{origin}={path}: the {what} file is {size} bytes; that is not a {what}"
            )
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ConnectionSettingsError(
            f"{origin}={shown_path(path)}: the {what} file does not exist; check the path"
        ) from None
    except IsADirectoryError:
        raise ConnectionSettingsError(
            f"{origin}={shown_path(path)}: is a directory, expected the {what} file"
        ) from None
    except PermissionError:
        raise ConnectionSettingsError(
            f"{origin}={path}: the {what} file is not readable by this user; check its permissions"
        ) from None
    except OSError as exc:
        raise ConnectionSettingsError(
            f"{origin}={path}: cannot read the {what} file ({exc.strerror or type(exc).__name__})"
        ) from None


def read_secret(source: CredentialSource, environ: Mapping[str, str]) -> str:
    """The client secret, from its environment variable or file."""
    if source.path:
        raw = _read_file(source.path, "client secret", source.origin or "--client-secret-file")
        try:
            secret = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConnectionSettingsError(
                f"{source.origin}={source.path}: the client secret file is not UTF-8 text"
            ) from None
        if not secret:
            raise ConnectionSettingsError(
                f"{source.origin}={source.path}: the client secret file is empty"
            )
    else:
        name = source.secret_env or "AZURE_CLIENT_SECRET"
        secret = environ.get(name, "").strip()
        if not secret:
            raise ConnectionSettingsError(f"{name} is empty: set it to the app's client secret")
    register_secret(secret)
    return secret


def _is_pem(data: bytes) -> bool:
    return b"-----BEGIN" in data


def load_certificate(path: str, password: str | None, origin: str) -> CertificateCredential:
    """Load a PEM (certificate + private key, in one file) or PFX certificate credential."""
    data = _read_file(path, "certificate", origin)
    pw = password.encode("utf-8") if password else None
    if _is_pem(data):
        key, certs = _load_pem(data, pw, path, origin)
    else:
        key, certs = _load_pfx(data, pw, path, origin)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConnectionSettingsError(
            f"{origin}={path}: the private key is neither RSA nor EC; Entra ID needs an RSA key"
        )
    cert = _certificate_for_key(key, certs, path, origin)
    now = dt.datetime.now(dt.UTC)
    not_after = cert.not_valid_after_utc
    if not_after < now:
        # Entra ID refuses it; saying so here beats an opaque AADSTS code later.
        raise ConnectionSettingsError(
            f"{origin}={path}: the certificate expired on {not_after:%Y-%m-%d}; "
            "upload a new one to the app registration and point to it"
        )
    if cert.not_valid_before_utc > now:
        log.warning("certificate %s is not valid before %s", path, cert.not_valid_before_utc)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    register_secret(key_pem)
    if password:
        register_secret(password)
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
    return CertificateCredential(
        private_key_pem=key_pem,
        thumbprint=thumbprint,
        public_certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        subject=cert.subject.rfc4514_string(),
        not_after=not_after,
    )


def _load_pem(
    data: bytes, pw: bytes | None, path: str, origin: str
) -> tuple[Any, list[x509.Certificate]]:
    if b"PRIVATE KEY-----" not in data:
        raise ConnectionSettingsError(
            f"{origin}={path}: the PEM file has no private key; put the certificate and its "
            "private key in one file (or use a PFX)"
        )
    try:
        key = serialization.load_pem_private_key(data, pw)
    except TypeError:
        if pw is None:
            raise ConnectionSettingsError(
                f"{origin}={path}: the private key is encrypted; set "
                "AZURE_CLIENT_CERTIFICATE_PASSWORD"
            ) from None
        raise ConnectionSettingsError(
            f"{origin}={path}: the private key is not encrypted but a password was given; "
            "unset AZURE_CLIENT_CERTIFICATE_PASSWORD"
        ) from None
    except ValueError as exc:
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise ConnectionSettingsError(
                f"{origin}={path}: wrong password for the private key "
                "(AZURE_CLIENT_CERTIFICATE_PASSWORD)"
            ) from None
        raise ConnectionSettingsError(
            f"{origin}={path}: the private key in the PEM file cannot be read"
        ) from None
    except Exception:  # unsupported algorithms and the like: one line, never the key
        raise ConnectionSettingsError(
            f"{origin}={path}: the private key in the PEM file cannot be read"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConnectionSettingsError(
            f"{origin}={path}: the PEM file has a private key but no certificate; put the "
            "certificate and its private key in one file"
        )
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        # load_pem_x509_certificates refuses files that also hold a key on some versions:
        # pick the certificate blocks out ourselves.
        certs = _pem_certificate_blocks(data, path, origin)
    return key, certs


def _pem_certificate_blocks(data: bytes, path: str, origin: str) -> list[x509.Certificate]:
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    certs: list[x509.Certificate] = []
    pos = 0
    while (start := data.find(begin, pos)) >= 0:
        stop = data.find(end, start)
        if stop < 0:
            break
        try:
            certs.append(x509.load_pem_x509_certificate(data[start : stop + len(end)]))
        except ValueError:
            raise ConnectionSettingsError(
                f"{origin}={path}: a certificate in the PEM file cannot be read"
            ) from None
        pos = stop + len(end)
    return certs


def _load_pfx(
    data: bytes, pw: bytes | None, path: str, origin: str
) -> tuple[Any, list[x509.Certificate]]:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
    except ValueError as exc:
        if "password" in str(exc).lower():
            hint = (
                "wrong password (AZURE_CLIENT_CERTIFICATE_PASSWORD)"
                if pw
                else "it needs a password: set AZURE_CLIENT_CERTIFICATE_PASSWORD"
            )
            raise ConnectionSettingsError(
                f"{origin}={path}: cannot open the PFX file: {hint}"
            ) from None
        raise ConnectionSettingsError(
            f"{origin}={path}: neither a PEM nor a PFX (PKCS#12) certificate file"
        ) from None
    except Exception:
        raise ConnectionSettingsError(
            f"{origin}={path}: neither a PEM nor a PFX (PKCS#12) certificate file"
        ) from None
    if key is None:
        raise ConnectionSettingsError(f"{origin}={path}: the PFX file has no private key")
    certs = ([cert] if cert is not None else []) + list(extra)
    return key, certs


def _certificate_for_key(
    key: Any, certs: list[x509.Certificate], path: str, origin: str
) -> x509.Certificate:
    """The certificate whose public key matches the private key (files may carry a chain)."""
    if not certs:
        raise ConnectionSettingsError(f"{origin}={path}: the file has no certificate")
    want = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for cert in certs:
        have = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if have == want:
            return cert
    raise ConnectionSettingsError(
        f"{origin}={path}: no certificate in the file matches its private key"
    )


def federated_token_reader(path: str, origin: str) -> Callable[[], str]:
    """A callable msal invokes for every token request: it re-reads the (rotated) token file."""

    def read_token() -> str:
        raw = _read_file(path, "federated token", origin)
        token = raw.decode("utf-8", errors="replace").strip()
        if not token:
            raise ConnectionSettingsError(f"{origin}={path}: the federated token file is empty")
        register_secret(token)
        return token

    return read_token


def msal_client_credential(
    source: CredentialSource, environ: Mapping[str, str]
) -> str | dict[str, Any]:
    """The `client_credential` argument of msal.ConfidentialClientApplication.

    Reads the credential now (so a missing or unreadable one fails before any request), except
    the federated token, which is checked now and read again at every token request.
    """
    if source.kind == "secret":
        return read_secret(source, environ)
    if source.kind == "certificate":
        assert source.path is not None
        password = environ.get(source.password_env or "AZURE_CLIENT_CERTIFICATE_PASSWORD") or None
        cert = load_certificate(source.path, password, source.origin)
        log.debug("certificate credential %r", cert)
        return cert.for_msal()
    assert source.path is not None
    reader = federated_token_reader(source.path, source.origin)
    reader()  # fail early and clearly when the file is missing or empty
    return {"client_assertion": reader}
