"""The Entra ID side: registered apps, the token endpoint, and access-token verification.

Tokens are RS256 JWTs signed with the emulator's key, shaped like Entra's v1 app-only tokens
for Exchange (aud, iss, tid, appid, appidacr, roles, wids, exp, ...). The admin API verifies them
once per token string and caches the claims (RS256 verification costs far more than a request).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler.emulator.pki import (
    AppCertificate,
    Pki,
    load_or_create_app_certificate,
    write_atomic,
)

MANAGE_AS_APP = "Exchange.ManageAsApp"
EXCHANGE_RESOURCE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"

ROLE_EXCHANGE_ADMIN = "29232cdf-9323-42fd-ade2-1d097af3e4de"
ROLE_GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
ROLE_GLOBAL_READER = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
ROLE_EXCHANGE_RECIPIENT_ADMIN = "31392ffb-586c-42d1-9346-e59415a2cc4e"
ROLE_SECURITY_READER = "5d6b6bb7-de71-4623-b4af-96380a352509"
# Directory roles that give an app any Exchange access (reference adminapi §2), and which write.
EXCHANGE_ROLES = frozenset(
    {ROLE_EXCHANGE_ADMIN, ROLE_GLOBAL_ADMIN, ROLE_GLOBAL_READER, ROLE_EXCHANGE_RECIPIENT_ADMIN}
)
WRITE_ROLES = frozenset({ROLE_EXCHANGE_ADMIN, ROLE_GLOBAL_ADMIN})
RECIPIENT_WRITE_ROLES = frozenset({ROLE_EXCHANGE_RECIPIENT_ADMIN})

# Resources the token endpoint issues tokens for (Graph too: the API must refuse its tokens).
KNOWN_RESOURCES = (
    "https://outlook.office365.com",
    "https://outlook.office.com",
    "https://graph.microsoft.com",
    "https://outlook.office365.us",
    "https://outlook-dod.office365.us",
    "https://partner.outlook.cn",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
)
GRAPH_RESOURCES = frozenset(
    {
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
    }
)
GRAPH_READ_ROLES = ("AuditLog.Read.All", "Directory.Read.All", "Policy.Read.All")
_APP_NAMESPACE = uuid.UUID("6f6a3b8e-2b1d-4f3c-9a51-5d8e0c7b1a10")


@dataclass(frozen=True)
class AppRegistration:
    """An app registration + service principal in the emulated tenant."""

    name: str
    client_id: str
    roles: tuple[str, ...]
    wids: tuple[str, ...]
    secret: str
    certificate: AppCertificate | None
    federated_subject: str | None
    object_id: str
    # Microsoft Graph application permissions (the `roles` of its Graph tokens).
    graph_roles: tuple[str, ...] = ()


def client_id_for(name: str) -> str:
    """The fixed, deterministic client id of a built-in app."""
    return str(uuid.uuid5(_APP_NAMESPACE, name))


_APP_DEFINITIONS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], bool], ...] = (
    # name, roles, wids, has certificate + federated credential
    ("writer", (MANAGE_AS_APP,), (ROLE_EXCHANGE_ADMIN,), True),
    ("reader", (MANAGE_AS_APP,), (ROLE_GLOBAL_READER,), True),
    ("no_permission", (), (ROLE_EXCHANGE_ADMIN,), False),
    ("no_role", (MANAGE_AS_APP,), (), False),
)


ROLE_IDS = {
    "exchange_administrator": ROLE_EXCHANGE_ADMIN,
    "global_administrator": ROLE_GLOBAL_ADMIN,
    "global_reader": ROLE_GLOBAL_READER,
    "exchange_recipient_administrator": ROLE_EXCHANGE_RECIPIENT_ADMIN,
    "security_reader": ROLE_SECURITY_READER,
}


AppDefinition: TypeAlias = tuple[str, tuple[str, ...], tuple[str, ...], bool, tuple[str, ...]]


def app_definitions(extra: dict[str, dict[str, Any]] | None) -> tuple[AppDefinition, ...]:
    """The built-in apps plus/overridden by `extra`: (name, roles, wids, has certificate,
    Graph application permissions).

    `extra` maps an app name to {"manage_as_app": bool, "roles": [role name or wid GUID, ...],
    "certificate": bool, "graph_roles": [Graph permission, ...]}; an app with a certificate
    has GRAPH_READ_ROLES unless `graph_roles` says otherwise. ValueError with a one-line
    reason for anything else.
    """
    definitions: dict[str, AppDefinition] = {
        name: (name, roles, wids, strong, GRAPH_READ_ROLES if strong else ())
        for name, roles, wids, strong in _APP_DEFINITIONS
    }
    keys = {"manage_as_app", "roles", "certificate", "graph_roles"}
    for name, spec in (extra or {}).items():
        if not isinstance(spec, dict) or set(spec) - keys:
            raise ValueError(f"app {name!r}: expected keys {', '.join(sorted(keys))}")
        wids = []
        for role in spec.get("roles", []):
            wid = ROLE_IDS.get(str(role).lower(), str(role))
            try:
                uuid.UUID(wid)
            except ValueError:
                raise ValueError(
                    f"app {name!r}: unknown role {role!r} (use {', '.join(ROLE_IDS)} or a GUID)"
                ) from None
            wids.append(wid)
        roles = (MANAGE_AS_APP,) if spec.get("manage_as_app", True) else ()
        strong = bool(spec.get("certificate", False))
        graph = spec.get("graph_roles", GRAPH_READ_ROLES if strong else ())
        if not isinstance(graph, list | tuple) or not all(isinstance(g, str) for g in graph):
            raise ValueError(f"app {name!r}: graph_roles must be a list of permission names")
        definitions[name] = (name, roles, tuple(wids), strong, tuple(graph))
    return tuple(definitions.values())


def load_or_create_apps(
    directory: Path, extra: dict[str, dict[str, Any]] | None = None
) -> dict[str, AppRegistration]:
    """The registered apps; their secrets persist in directory/apps.json (0600)."""
    secrets_path = directory / "apps.json"
    stored: dict[str, str] = {}
    if secrets_path.exists():
        try:
            stored = json.loads(secrets_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            stored = {}
    apps: dict[str, AppRegistration] = {}
    changed = False
    for name, roles, wids, strong, graph_roles in app_definitions(extra):
        secret = stored.get(name)
        if not secret:
            # Entra secrets look like "abc8Q~...": 40 characters with a "~".
            secret = secrets.token_urlsafe(27)[:3] + "8Q~" + secrets.token_urlsafe(27)[:34]
            stored[name] = secret
            changed = True
        certificate = (
            load_or_create_app_certificate(directory / "apps" / f"{name}.pem", name)
            if strong
            else None
        )
        apps[name] = AppRegistration(
            name=name,
            client_id=client_id_for(name),
            roles=roles,
            wids=wids,
            secret=secret,
            certificate=certificate,
            federated_subject=f"repo:contoso/authpolicy:environment:{name}" if strong else None,
            object_id=str(uuid.uuid5(_APP_NAMESPACE, f"{name}/sp")),
            graph_roles=graph_roles,
        )
    if changed:
        write_atomic(secrets_path, json.dumps(stored, indent=1).encode("utf-8"))
    return apps


class TokenError(Exception):
    """An OAuth error answer of the token endpoint (AADSTS style)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self) -> dict[str, Any]:
        """The JSON Entra answers with."""
        trace = str(uuid.uuid4())
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace}",
            "error_codes": [self.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class AccessContext:
    """What the admin API learns from a valid token."""

    app: AppRegistration | None
    claims: dict[str, Any]
    issued_at: float


@dataclass
class _CacheEntry:
    claims: dict[str, Any] | None
    reason: str = ""
    expires: float = 0.0


@dataclass
class IdentityService:
    """Issues and verifies tokens for one tenant."""

    pki: Pki
    apps: dict[str, AppRegistration]
    tenant_id: str
    tenant_domain: str
    _cache: dict[str, _CacheEntry] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._by_client_id = {app.client_id: app for app in self.apps.values()}
        self._public_key = self.pki.signing_key.public_key()
        self._federated_public_key = self.pki.federated_issuer_key.public_key()

    def app_by_client_id(self, client_id: str) -> AppRegistration | None:
        """The app with this client id, if registered."""
        return self._by_client_id.get(client_id)

    def knows_tenant(self, tenant: str) -> bool:
        """True for the tenant GUID or its initial domain."""
        return tenant.lower() in (self.tenant_id.lower(), self.tenant_domain.lower())

    # ----------------------------------------------------------------- issuing
    def mint(
        self,
        app: AppRegistration,
        resource: str,
        lifetime: int,
        *,
        appidacr: str = "1",
        overrides: dict[str, Any] | None = None,
    ) -> str:
        """Sign an app-only access token (tests may override claims to craft bad ones)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": _b64url(secrets.token_bytes(24)),
            "app_displayname": f"authpolicy-{app.name}",
            "appid": app.client_id,
            "appidacr": appidacr,
            "idp": f"https://sts.windows.net/{self.tenant_id}/",
            "idtyp": "app",
            "oid": app.object_id,
            "rh": "0.emulator.",
            "sub": app.object_id,
            "tid": self.tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "1.0",
            "wids": list(app.wids),
        }
        roles = app.graph_roles if resource in GRAPH_RESOURCES else app.roles
        if roles:
            claims["roles"] = list(roles)
        if overrides:
            for key, value in overrides.items():
                if value is None:
                    claims.pop(key, None)
                else:
                    claims[key] = value
        headers = {"kid": self.pki.signing_kid, "x5t": self.pki.signing_kid}
        return jwt.encode(claims, self.pki.signing_key, algorithm="RS256", headers=headers)

    def issue_federated_token(self, subject: str, ttl: int, audience: str, issuer: str) -> str:
        """A workload-identity assertion from the trusted test issuer."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(
            claims, self.pki.federated_issuer_key, algorithm="RS256", headers={"kid": "fed-1"}
        )

    # ------------------------------------------------------------- token endpoint
    def token_request(
        self,
        tenant: str,
        form: dict[str, str],
        token_endpoint: str,
        *,
        lifetime: int,
        revoked: tuple[str, ...],
        federated_issuer: str,
        federated_audience: str,
        resources: tuple[str, ...] = KNOWN_RESOURCES,
    ) -> dict[str, Any]:
        """Answer a client-credentials grant; raise TokenError as Entra would.

        `resources` are the resources this cloud's Entra knows; a resource of another cloud is
        AADSTS500011, as Entra answers a token request sent to the wrong cloud.
        """
        if not self.knows_tenant(tenant):
            raise TokenError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id", "")
        app = self.app_by_client_id(client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_domain}'.",
            )
        scope = form.get("scope", "").split()
        resource = scope[0][: -len("/.default")] if len(scope) == 1 else ""
        if not scope or not scope[0].endswith("/.default") or resource not in KNOWN_RESOURCES:
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {' '.join(scope)} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource "
                "identifier (application ID URI).",
            )
        if resource not in resources:
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.tenant_domain}. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You might have sent your authentication request to the wrong tenant.",
            )
        appidacr = self._authenticate_client(
            app, form, token_endpoint, federated_issuer, federated_audience
        )
        if app.name in revoked:
            raise TokenError(
                401,
                "invalid_client",
                7000222,
                f"The provided client credentials for app '{app.client_id}' are expired or "
                "revoked.",
            )
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": self.mint(app, resource, lifetime, appidacr=appidacr),
        }

    def _authenticate_client(
        self,
        app: AppRegistration,
        form: dict[str, str],
        token_endpoint: str,
        federated_issuer: str,
        federated_audience: str,
    ) -> str:
        if "client_secret" in form:
            if not secrets.compare_digest(form["client_secret"], app.secret):
                raise TokenError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    f"is the client secret value, not the client secret ID, for a secret added "
                    f"to app '{app.client_id}'.",
                )
            return "1"
        assertion = form.get("client_assertion")
        if not assertion or form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise TokenError(
                401, "invalid_client", 50027, "JWT token is invalid or malformed."
            ) from None
        if unverified.get("iss") == federated_issuer:
            self._verify_federated(app, assertion, federated_issuer, federated_audience)
            return "2"
        self._verify_certificate_assertion(app, assertion, header, token_endpoint)
        return "2"

    def _verify_certificate_assertion(
        self, app: AppRegistration, assertion: str, header: dict[str, Any], token_endpoint: str
    ) -> None:
        cert = app.certificate
        # msal keeps base64 padding on x5t; Entra compares the thumbprint bytes, so strip it.
        x5t = str(header["x5t"]).rstrip("=") if header.get("x5t") else None
        x5t256 = str(header["x5t#S256"]).rstrip("=") if header.get("x5t#S256") else None
        matches = cert is not None and (
            (x5t is not None and x5t == _b64url(cert.sha1_thumbprint))
            or (x5t256 is not None and x5t256 == _b64url(cert.sha256_thumbprint))
        )
        if cert is None or not matches:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not "
                f"registered on application. [Reason - The key was not found., Thumbprint of key "
                f"used by client: '{x5t or x5t256}']",
            )
        audiences = {token_endpoint, token_endpoint.replace(self.tenant_id, self.tenant_domain)}
        try:
            public_key = cert.certificate.public_key()
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise jwt.InvalidKeyError("not an RSA certificate")
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256", "PS256"],
                audience=list(audiences),
                options={"require": ["exp", "aud", "iss", "sub"]},
                leeway=300,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenError(
                401,
                "invalid_client",
                700212,
                "No matching federated identity record found for presented assertion audience.",
            ) from None
        except jwt.PyJWTError:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.",
            ) from None
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise TokenError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )

    def _verify_federated(
        self, app: AppRegistration, assertion: str, issuer: str, audience: str
    ) -> None:
        try:
            claims = jwt.decode(
                assertion,
                self._federated_public_key,
                algorithms=["RS256"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(
                400,
                "invalid_request",
                700024,
                "Client assertion is not within its valid time range.",
            ) from None
        except jwt.PyJWTError:
            raise TokenError(
                401,
                "invalid_client",
                700213,
                "No matching federated identity record found for presented assertion.",
            ) from None
        if app.federated_subject is None or claims.get("sub") != app.federated_subject:
            raise TokenError(
                400,
                "invalid_request",
                700213,
                f"No matching federated identity record found for presented assertion subject "
                f"'{claims.get('sub')}'.",
            )

    # ------------------------------------------------------------- access tokens
    def verify_access_token(
        self, token: str, accepted_audiences: tuple[str, ...]
    ) -> tuple[dict[str, Any] | None, str]:
        """Claims of a valid token (signature and expiry checked), or (None, reason).

        Signature verification is cached per token string; the expiry is re-checked each call.
        """
        now = time.time()
        with self._cache_lock:
            entry = self._cache.get(token)
        if entry is None:
            entry = self._verify_uncached(token)
            with self._cache_lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = entry
        if entry.claims is None:
            return None, entry.reason
        if now >= entry.expires:
            return None, "Lifetime validation failed, the token is expired."
        if entry.claims.get("aud") not in accepted_audiences:
            return None, "The audience of the token is not valid for this resource."
        return entry.claims, ""

    def _verify_uncached(self, token: str) -> _CacheEntry:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "require": ["exp", "tid"]},
            )
        except jwt.PyJWTError:
            return _CacheEntry(None, "The token signature is invalid.")
        return _CacheEntry(claims, "", float(claims["exp"]))


def thumbprint_hex(cert: AppCertificate) -> str:
    """The SHA-1 thumbprint as Entra shows it (upper-case hex)."""
    return cert.sha1_thumbprint.hex().upper()
