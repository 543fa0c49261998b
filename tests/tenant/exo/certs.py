"""Test certificates made on the fly (never checked in: keys in a repo look like leaks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


def make_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(
    key: rsa.RSAPrivateKey,
    *,
    cn: str = "authpolicy-test",
    days: int = 30,
    start_days_ago: int = 1,
    issuer_key: rsa.RSAPrivateKey | None = None,
    issuer_name: str | None = None,
    ca: bool = False,
    san_ip: str | None = None,
) -> x509.Certificate:
    import ipaddress

    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=start_days_ago))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def key_pem(key: rsa.RSAPrivateKey, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pem(
    path: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate, password: bytes | None = None
) -> Path:
    path.write_bytes(cert_pem(cert) + key_pem(key, password))
    return path


def write_pfx(
    path: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate, password: bytes | None
) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"app", key, cert, None, encryption))
    return path
