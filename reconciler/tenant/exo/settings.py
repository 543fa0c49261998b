"""Connection settings: which cloud, which tenant, which app, which credential, which endpoint.

Everything here is plain data and validation; nothing talks to the network. The values come
from the environment variables of DESIGN.md, which flags may override (see
`reconciler.tenant.connect`). Secrets are never held here as text: a credential is described
by where it lives (an environment variable or a file), and read by `credentials.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from reconciler.errors import ConnectionSettingsError


@dataclass(frozen=True, slots=True)
class Cloud:
    """Where one Microsoft cloud keeps its Exchange admin API and its Entra ID authority."""

    name: str
    exchange_host: str  # base of /adminapi/beta/{tenant}/InvokeCommand
    authority_host: str  # Entra ID login host
    scope: str  # token scope: the Exchange resource + /.default
    # Hosts this cloud's Exchange service is known to name in redirects and @odata.nextLink
    # (round2-facts.md §3: the captured @odata.context names outlook.office.com).
    exchange_hosts: tuple[str, ...] = ()
    # Microsoft Graph of this cloud (round2-facts.md §2): the sign-in log; its token has its
    # own scope ({graph_host}/.default) and its own trusted host.
    graph_host: str = ""


# exo-adminapi.md §1.3 and §2. The DoD and China hosts conflict between sources; we follow the
# v2.0 Admin API docs and CSS-Exchange for DoD (outlook-dod.office365.us, also the scope a public
# sample uses) and the module's ConnectionUri for China. --exchange-host and --scope override
# both, because the reference says to keep them configurable.
CLOUDS: dict[str, Cloud] = {
    "commercial": Cloud(
        "commercial",
        "https://outlook.office365.com",
        "https://login.microsoftonline.com",
        "https://outlook.office365.com/.default",
        ("outlook.office365.com", "outlook.office.com"),
        "https://graph.microsoft.com",
    ),
    "gcc-high": Cloud(
        "gcc-high",
        "https://outlook.office365.us",
        "https://login.microsoftonline.us",
        "https://outlook.office365.us/.default",
        ("outlook.office365.us",),
        "https://graph.microsoft.us",
    ),
    "dod": Cloud(
        "dod",
        "https://outlook-dod.office365.us",
        "https://login.microsoftonline.us",
        "https://outlook-dod.office365.us/.default",
        ("outlook-dod.office365.us",),
        "https://dod-graph.microsoft.us",
    ),
    "china": Cloud(
        "china",
        "https://partner.outlook.cn",
        "https://login.chinacloudapi.cn",
        "https://partner.outlook.cn/.default",
        ("partner.outlook.cn",),
        "https://microsoftgraph.chinacloudapi.cn",
    ),
}

CredentialKind = Literal["secret", "certificate", "federated"]
CREDENTIAL_KINDS: tuple[CredentialKind, ...] = ("secret", "certificate", "federated")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$"
)


@dataclass(frozen=True, slots=True)
class CredentialSource:
    """Where the app's credential lives. The secret itself is read later, only when needed.

    - secret: `secret_env` names the variable holding it, or `path` a file holding it;
    - certificate: `path` is a PEM (certificate + key) or PFX file, `password_env` the variable
      that holds the PFX / key password, if any;
    - federated: `path` is a token file, re-read at every token request (it is rotated).
    """

    kind: CredentialKind
    path: str | None = None
    secret_env: str | None = None
    password_env: str | None = None
    origin: str = ""  # how it was configured, for messages, e.g. "AZURE_CLIENT_SECRET"


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Everything needed to reach one tenant's Exchange Online as one app."""

    tenant: str  # GUID or initial *.onmicrosoft.com domain
    client_id: str
    cloud: Cloud
    credential: CredentialSource
    endpoint: str | None = None  # AUTHPOLICY_ENDPOINT: replaces both hosts (the emulator)
    ca_bundle: str | None = None  # AUTHPOLICY_CA_BUNDLE: extra CA to trust
    exchange_host: str | None = None  # override of cloud.exchange_host
    scope: str | None = None  # override of cloud.scope
    # AUTHPOLICY_TRUSTED_HOSTS: more host[:port] names the admin API may redirect to or name in
    # a nextLink (the emulator prints its own); a token is sent to no host outside this set.
    trusted_hosts: tuple[str, ...] = ()

    @property
    def authority(self) -> str:
        """The Entra ID authority URL msal is given."""
        host = self.endpoint or self.cloud.authority_host
        return f"{host}/{self.tenant}"

    @property
    def adminapi_base(self) -> str:
        """`{host}/adminapi/beta/{tenant}`: InvokeCommand and $batch live below it."""
        host = self.endpoint or self.exchange_host or self.cloud.exchange_host
        return f"{host}/adminapi/beta/{self.tenant}"

    @property
    def token_scope(self) -> str:
        return self.scope or self.cloud.scope

    @property
    def token_resource(self) -> str:
        """The resource (token `aud`) the scope asks for: the scope without /.default."""
        return self.token_scope.removesuffix("/.default").rstrip("/")

    @property
    def api_origin(self) -> str:
        """scheme://host:port of the admin API as configured (the first place a token goes)."""
        return origin_of(self.adminapi_base)

    @property
    def trusted_origins(self) -> frozenset[str]:
        """Every scheme://host:port an Exchange token may be sent to: the configured admin API,
        the cloud's known Exchange hosts (not with AUTHPOLICY_ENDPOINT) and the trusted hosts."""
        origins = {self.api_origin}
        if not self.endpoint:
            origins |= {f"https://{host}:443" for host in self.cloud.exchange_hosts}
        origins |= {origin_of(f"https://{host}") for host in self.trusted_hosts}
        return frozenset(origins)


def origin_of(url: str) -> str:
    """Normalised scheme://host:port of a URL (default ports made explicit)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    return f"{scheme}://{host}:{port}"


def on_trusted_origin(url: str, trusted: frozenset[str]) -> bool:
    """Is `url` https on one of the `trusted` origins (where a token may be sent)?"""
    try:
        origin = origin_of(url)
    except ValueError:
        return False
    return urlsplit(url).scheme.lower() == "https" and origin in trusted


def hidden(value: str) -> str:
    """How an error names a value it rejected: never the value itself, which may be a secret
    pasted into the wrong variable; its length is enough to recognise a mistake."""
    return f"(the value is not shown: {len(value)} characters)"


def shown_word(value: str) -> str:
    """A short plain word (a cloud name) quoted; anything else `hidden`."""
    return repr(value) if re.fullmatch(r"[A-Za-z0-9 _-]{1,20}", value) else hidden(value)


def shown_path(path: str) -> str:
    """A path for an error: shown when it looks like a path, else `hidden` (a secret pasted
    into AZURE_CLIENT_CERTIFICATE_PATH must not come back in the error line)."""
    looks_like_path = (
        path.startswith(("/", "./", "../", "~"))
        and not any(c.isspace() for c in path)
        and len(path) <= 4096
    )
    return path if looks_like_path else hidden(path)


def cloud_named(name: str, origin: str = "AUTHPOLICY_CLOUD") -> Cloud:
    """The cloud for a name given by the user, or a one-line error listing the valid ones."""
    cloud = CLOUDS.get(name.strip().lower())
    if cloud is None:
        raise ConnectionSettingsError(
            f"{origin}={shown_word(name)} is not a known cloud; use one of: {', '.join(CLOUDS)}"
        )
    return cloud


def check_tenant(tenant: str, origin: str = "AZURE_TENANT_ID") -> str:
    """A tenant GUID or domain, stripped; a one-line error for anything else."""
    value = tenant.strip()
    if not value:
        raise ConnectionSettingsError(
            f"{origin} is empty: set it to the tenant GUID or the initial *.onmicrosoft.com domain"
        )
    if not (_GUID.match(value) or _DOMAIN.match(value)):
        raise ConnectionSettingsError(
            f"{origin} is neither a tenant GUID nor a domain {hidden(value)}: set it to the "
            "tenant GUID or the initial *.onmicrosoft.com domain"
        )
    return value.lower() if _GUID.match(value) else value


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def check_client_id(client_id: str, origin: str = "AZURE_CLIENT_ID") -> str:
    """The application (client) id, stripped; a one-line error when empty or malformed."""
    value = client_id.strip()
    if not value:
        raise ConnectionSettingsError(
            f"{origin} is empty: set it to the application (client) id of the app registration"
        )
    if any(c.isspace() or c in "/?#" for c in value):
        raise ConnectionSettingsError(
            f"{origin} is not an application id: expected a GUID such as "
            "00000000-0000-0000-0000-000000000000"
        )
    return value


def check_trusted_hosts(text: str, origin: str = "AUTHPOLICY_TRUSTED_HOSTS") -> tuple[str, ...]:
    """Comma-separated host[:port] names; a one-line error for anything that is not one."""
    hosts: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            parts = urlsplit(f"https://{item}")
            _ = parts.port
        except ValueError:
            raise ConnectionSettingsError(
                f"{origin}: {item[:40]!r} is not a host[:port] name"
            ) from None
        if not parts.hostname or parts.path or parts.query or parts.username or parts.password:
            raise ConnectionSettingsError(
                f"{origin}: {item[:40]!r} is not a host[:port] name (no scheme, path or user)"
            )
        hosts.append(item.lower())
    return tuple(hosts)


def check_https_base(url: str, origin: str) -> str:
    """An https://host[:port] base URL without path, query or credentials; trailing / dropped."""
    value = url.strip().rstrip("/")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ConnectionSettingsError(f"{origin} is not a valid URL {hidden(value)}") from None
    if parts.scheme.lower() != "https":
        raise ConnectionSettingsError(
            f"{origin} must be an https:// URL {hidden(value)} (TLS is always verified; for the "
            "emulator also set AUTHPOLICY_CA_BUNDLE to its CA)"
        )
    if not parts.hostname:
        raise ConnectionSettingsError(f"{origin} has no host {hidden(value)}")
    if parts.username or parts.password:
        raise ConnectionSettingsError(f"{origin} must not contain a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConnectionSettingsError(
            f"{origin} must be a base URL such as https://127.0.0.1:8443 {hidden(value)} "
            "(no path or query)"
        )
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in (parts.hostname or "") and port is not None:  # IPv6 literal
        netloc = f"[{parts.hostname}]:{port}"
    return f"https://{netloc}"
