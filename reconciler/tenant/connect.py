"""From flags and environment to a connected `Tenant`.

The connection is never in policies.yaml (DESIGN.md, Connection). Environment variables:
`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, one credential of `AZURE_CLIENT_SECRET`,
`AZURE_CLIENT_CERTIFICATE_PATH` (+ `AZURE_CLIENT_CERTIFICATE_PASSWORD`) and
`AZURE_FEDERATED_TOKEN_FILE`; `AUTHPOLICY_CLOUD`, `AUTHPOLICY_ENDPOINT`, `AUTHPOLICY_CA_BUNDLE`.
Flags override them. No flag ever takes a secret value: secrets come from the environment or
from files (`--client-secret-file`, `--certificate`, `--federated-token-file`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from reconciler.errors import ConnectionSettingsError
from reconciler.tenant.base import Tenant
from reconciler.tenant.exo.settings import (
    CLOUDS,
    CREDENTIAL_KINDS,
    ConnectionSettings,
    CredentialSource,
    check_client_id,
    check_https_base,
    check_tenant,
    check_trusted_hosts,
    cloud_named,
    shown_path,
)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags shared by every verb that talks to a tenant."""
    group = parser.add_argument_group(
        "connection", "override the AZURE_* / AUTHPOLICY_* environment variables"
    )
    group.add_argument("--tenant-id", metavar="TENANT", help="tenant GUID or initial domain")
    group.add_argument("--client-id", metavar="ID", help="application (client) id")
    group.add_argument(
        "--cloud", choices=sorted(CLOUDS), help="Microsoft cloud (default commercial)"
    )
    group.add_argument(
        "--endpoint", metavar="URL", help="one https base URL for login and admin API (emulator)"
    )
    group.add_argument("--ca-bundle", metavar="PEM", help="extra CA certificate(s) to trust")
    group.add_argument(
        "--credential",
        choices=CREDENTIAL_KINDS,
        help="which credential to use when several are configured",
    )
    group.add_argument(
        "--certificate",
        metavar="PATH",
        help="PEM (certificate + key) or PFX file; its password "
        "only via AZURE_CLIENT_CERTIFICATE_PASSWORD",
    )
    group.add_argument(
        "--client-secret-file", metavar="PATH", help="file holding the client secret"
    )
    group.add_argument(
        "--federated-token-file", metavar="PATH", help="workload identity token file (re-read)"
    )
    group.add_argument(
        "--read-concurrency",
        type=_read_concurrency,
        default=None,
        metavar="N",
        help="read the users on up to N cursors side by side, partitioned by UPN prefix "
        f"(default {DEFAULT_READ_CONCURRENCY}; 1: one cursor; AUTHPOLICY_READ_CONCURRENCY)",
    )
    group.add_argument("--exchange-host", metavar="URL", help=argparse.SUPPRESS)
    group.add_argument("--scope", metavar="SCOPE", help=argparse.SUPPRESS)


MAX_READ_CONCURRENCY = 16
# Get-User cursors by default: AIMD backs off from here when Exchange pushes back.
DEFAULT_READ_CONCURRENCY = 8


def _read_concurrency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_READ_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_READ_CONCURRENCY}, got {value}")
    return value


def read_concurrency_of(args: Any, environ: Mapping[str, str]) -> int:
    """--read-concurrency, else AUTHPOLICY_READ_CONCURRENCY, else the default (8)."""
    value = getattr(args, "read_concurrency", None)
    if value is not None:
        return int(value)
    text = environ.get("AUTHPOLICY_READ_CONCURRENCY", "").strip()
    if not text:
        return DEFAULT_READ_CONCURRENCY
    try:
        return _read_concurrency(text)
    except argparse.ArgumentTypeError as exc:
        raise ConnectionSettingsError(f"AUTHPOLICY_READ_CONCURRENCY: {exc}") from None


def _pick(args: Any, flag: str, environ: Mapping[str, str], env: str) -> tuple[str | None, str]:
    """A setting from its flag, else its environment variable: (value, where it came from)."""
    value = getattr(args, flag, None)
    if value not in (None, ""):
        return str(value), "--" + flag.replace("_", "-")
    env_value = environ.get(env)
    if env_value not in (None, ""):
        return env_value, env
    return None, env


def _credential(args: Any, environ: Mapping[str, str]) -> CredentialSource:
    configured: dict[str, CredentialSource] = {}
    secret_file = getattr(args, "client_secret_file", None)
    if secret_file:
        configured["secret"] = CredentialSource(
            "secret", path=secret_file, origin="--client-secret-file"
        )
    elif environ.get("AZURE_CLIENT_SECRET"):
        configured["secret"] = CredentialSource(
            "secret", secret_env="AZURE_CLIENT_SECRET", origin="AZURE_CLIENT_SECRET"
        )
    cert, cert_origin = _pick(args, "certificate", environ, "AZURE_CLIENT_CERTIFICATE_PATH")
    if cert:
        configured["certificate"] = CredentialSource(
            "certificate",
            path=cert,
            password_env="AZURE_CLIENT_CERTIFICATE_PASSWORD",
            origin=cert_origin,
        )
    token, token_origin = _pick(args, "federated_token_file", environ, "AZURE_FEDERATED_TOKEN_FILE")
    if token:
        configured["federated"] = CredentialSource("federated", path=token, origin=token_origin)

    chosen = getattr(args, "credential", None) or environ.get("AUTHPOLICY_CREDENTIAL")
    if chosen:
        if chosen not in CREDENTIAL_KINDS:
            raise ConnectionSettingsError(
                f"AUTHPOLICY_CREDENTIAL={chosen!r}: use one of {', '.join(CREDENTIAL_KINDS)}"
            )
        if chosen not in configured:
            need = {
                "secret": "AZURE_CLIENT_SECRET (or --client-secret-file)",
                "certificate": "AZURE_CLIENT_CERTIFICATE_PATH (or --certificate)",
                "federated": "AZURE_FEDERATED_TOKEN_FILE (or --federated-token-file)",
            }[chosen]
            raise ConnectionSettingsError(
                f"the {chosen} credential was chosen but {need} is not set"
            )
        return configured[chosen]
    if not configured:
        raise ConnectionSettingsError(
            "no credential: set one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
            "AZURE_FEDERATED_TOKEN_FILE (secrets never go on the command line)"
        )
    if len(configured) > 1:
        names = ", ".join(c.origin for c in configured.values())
        raise ConnectionSettingsError(
            f"several credentials are set ({names}); keep one, or choose with --credential "
            f"{'|'.join(CREDENTIAL_KINDS)}"
        )
    return next(iter(configured.values()))


def connection_settings(args: Any, environ: Mapping[str, str] = os.environ) -> ConnectionSettings:
    """Validated settings from flags and environment (no network, no secret read yet)."""
    tenant, tenant_origin = _pick(args, "tenant_id", environ, "AZURE_TENANT_ID")
    if tenant is None:
        raise ConnectionSettingsError(
            "AZURE_TENANT_ID is not set: set it (or --tenant-id) to the tenant GUID or the initial "
            "*.onmicrosoft.com domain"
        )
    client_id, client_origin = _pick(args, "client_id", environ, "AZURE_CLIENT_ID")
    if client_id is None:
        raise ConnectionSettingsError(
            "AZURE_CLIENT_ID is not set: set it (or --client-id) to the application (client) id "
            "of the app registration"
        )
    cloud_name, cloud_origin = _pick(args, "cloud", environ, "AUTHPOLICY_CLOUD")
    cloud = cloud_named(cloud_name or "commercial", cloud_origin)
    endpoint, endpoint_origin = _pick(args, "endpoint", environ, "AUTHPOLICY_ENDPOINT")
    if endpoint is not None:
        endpoint = check_https_base(endpoint, endpoint_origin)
    ca_bundle, ca_origin = _pick(args, "ca_bundle", environ, "AUTHPOLICY_CA_BUNDLE")
    if ca_bundle is not None:
        if os.path.exists(ca_bundle) and not os.path.isfile(ca_bundle):
            raise ConnectionSettingsError(
                f"{ca_origin}={shown_path(ca_bundle)}: not a regular file (a directory, FIFO or "
                "device); name the CA's PEM file"
            )
        if os.path.isfile(ca_bundle) and os.path.getsize(ca_bundle) > 10_000_000:
            raise ConnectionSettingsError(
                f"{ca_origin}={shown_path(ca_bundle)}: over 10 MB, not a CA bundle; name the "
                "CA's PEM file"
            )
        if not os.path.isfile(ca_bundle):
            raise ConnectionSettingsError(
                f"{ca_origin}={shown_path(ca_bundle)}: the file does not exist"
            )
        if not os.access(ca_bundle, os.R_OK):
            raise ConnectionSettingsError(
                f"{ca_origin}={shown_path(ca_bundle)}: the file is not readable"
            )
    trusted_text, trusted_origin = _pick(args, "trusted_hosts", environ, "AUTHPOLICY_TRUSTED_HOSTS")
    trusted_hosts = check_trusted_hosts(trusted_text, trusted_origin) if trusted_text else ()
    exchange_host = getattr(args, "exchange_host", None)
    if exchange_host:
        exchange_host = check_https_base(exchange_host, "--exchange-host")
    return ConnectionSettings(
        tenant=check_tenant(tenant, tenant_origin),
        client_id=check_client_id(client_id, client_origin),
        cloud=cloud,
        credential=_credential(args, environ),
        endpoint=endpoint,
        ca_bundle=ca_bundle,
        exchange_host=exchange_host or None,
        scope=getattr(args, "scope", None) or None,
        trusted_hosts=trusted_hosts,
    )


def open_tenant(args: Any, environ: Mapping[str, str] = os.environ, **options: Any) -> Tenant:
    """A connected ExoTenant for the flags in `args` and the environment.

    Reads the credential now (a missing or unreadable one fails here, with a one-line
    `ConnectionSettingsError`); the first token is fetched on the first request. `options` go
    to `build_tenant` (use_batch, page_size, retry, on_throttle).
    """
    from reconciler.tenant.exo.factory import build_tenant

    tenant = build_tenant(connection_settings(args, environ), environ, **options)
    tenant.read_concurrency = read_concurrency_of(args, environ)
    if tenant.sign_in_reader is not None:  # the sign-in log in time slices, as many at once
        tenant.sign_in_reader.concurrency = tenant.read_concurrency
    return tenant
