"""Keys and certificates of the emulator, created once under its state dir and then reused.

* a self-signed CA (EC P-256) and a server certificate for 127.0.0.1/localhost signed by it:
  clients trust the CA file, never turn verification off;
* the RSA key that signs access tokens (RS256, like Entra);
* the RSA key of the trusted "federated" test issuer (workload identity);
* per app, an RSA client certificate + key (PEM, key first) for certificate credentials.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

_VALIDITY = dt.timedelta(days=3650)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write bytes to path via a temp file + rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_or_create_rsa(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_atomic(path, _pem_key(key))
    return key


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "authpolicy emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class AppCertificate:
    """A client certificate registered for an app."""

    path: Path  # PEM: private key then certificate
    certificate: x509.Certificate
    sha1_thumbprint: bytes
    sha256_thumbprint: bytes


@dataclass(frozen=True)
class Pki:
    """Everything cryptographic the emulator needs, loaded from or created in a directory."""

    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    signing_key: rsa.RSAPrivateKey
    federated_issuer_key: rsa.RSAPrivateKey

    @property
    def signing_kid(self) -> str:
        """Key id of the token signing key (a digest of its public key)."""
        return _key_id(self.signing_key)


def _key_id(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:32]


def load_or_create_pki(directory: Path) -> Pki:
    """Create (first run) or reuse the CA, server certificate and signing keys in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "ca.pem"
    ca_key_path = directory / "ca-key.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    if not (ca_path.exists() and ca_key_path.exists() and cert_path.exists() and key_path.exists()):
        _create_tls_material(ca_path, ca_key_path, cert_path, key_path)
    return Pki(
        ca_path=ca_path,
        server_cert_path=cert_path,
        server_key_path=key_path,
        signing_key=_load_or_create_rsa(directory / "token-signing-key.pem"),
        federated_issuer_key=_load_or_create_rsa(directory / "federated-issuer-key.pem"),
    )


def _create_tls_material(ca_path: Path, ca_key_path: Path, cert_path: Path, key_path: Path) -> None:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("authpolicy emulator CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_atomic(ca_key_path, _pem_key(ca_key))
    write_atomic(key_path, _pem_key(server_key))
    write_atomic(cert_path, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write_atomic(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)


def load_or_create_app_certificate(path: Path, app_name: str) -> AppCertificate:
    """An app's client certificate (self-signed RSA, like `New-SelfSignedCertificate`)."""
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        name = _name(f"authpolicy-{app_name}")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .sign(key, hashes.SHA256())
        )
        write_atomic(path, _pem_key(key) + cert.public_bytes(serialization.Encoding.PEM))
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return AppCertificate(
        path=path,
        certificate=cert,
        sha1_thumbprint=cert.fingerprint(hashes.SHA1()),
        sha256_thumbprint=cert.fingerprint(hashes.SHA256()),
    )
