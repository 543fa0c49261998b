"""App-only tokens from Entra ID with msal, cached and refreshed before they expire.

One `TokenProvider` per connection. It is thread-safe: the executor writes from several threads
and they share one token (a lock serialises acquisition; reading a fresh cached token is cheap).
A token is refreshed when less than `refresh_margin` of its life is left, and on demand after a
401 (`invalidate`), so a long read never sends an expired token twice.

msal failures (AADSTS codes) become one-line `AuthenticationError`s that say what is wrong and
what to do, never with the secret: the credential is only ever in msal's hands.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from reconciler.errors import AuthenticationError, ConnectionSettingsError
from reconciler.tenant.exo.redact import redact, register_secret
from reconciler.tenant.exo.settings import ConnectionSettings
from reconciler.tenant.exo.transport import root_cause_name

log = logging.getLogger(__name__)

# AADSTS code -> what it means for the user and what to do. Codes from Entra ID's error list.
_AADSTS_HINTS: dict[str, str] = {
    "700016": "the application (client) id {client_id} is not registered in tenant {tenant}; "
    "check AZURE_CLIENT_ID and AZURE_TENANT_ID",
    "90002": "tenant {tenant} does not exist; check AZURE_TENANT_ID (the tenant GUID or the "
    "initial *.onmicrosoft.com domain)",
    "90023": "the tenant id {tenant} is not valid; check AZURE_TENANT_ID",
    "900023": "the tenant id {tenant} is not valid; check AZURE_TENANT_ID",
    "7000215": "the client secret is wrong for app {client_id}; check AZURE_CLIENT_SECRET",
    "7000222": "the client secret of app {client_id} has expired; create a new one",
    "700027": "the certificate is not registered on app {client_id} (or the signature does not "
    "match); upload the certificate's public part to the app registration",
    "700024": "the federated token is expired or not yet valid; re-issue it "
    "(AZURE_FEDERATED_TOKEN_FILE)",
    "70021": "no federated identity credential on app {client_id} matches the token's issuer, "
    "subject and audience; add one to the app registration",
    "700211": "no federated identity credential on app {client_id} matches the token's issuer; "
    "add one to the app registration",
    "700213": "no federated identity credential on app {client_id} matches the token's subject; "
    "add one to the app registration",
    "700212": "the federated token's audience is not the one the app expects "
    "(api://AzureADTokenExchange)",
    "7000112": "app {client_id} is disabled in tenant {tenant}",
    "7000218": "the token request carried no credential; set AZURE_CLIENT_SECRET, "
    "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE",
    "50027": "the client assertion is malformed (a federated token file must hold one JWT); "
    "check the secret, certificate or AZURE_FEDERATED_TOKEN_FILE",
    "700021": "the client assertion was issued for another application than {client_id}",
    "7000229": "app {client_id} has no service principal in tenant {tenant}; an admin must "
    "consent to it",
    "65001": "app {client_id} has no admin consent for Exchange.ManageAsApp in tenant {tenant}; "
    "grant admin consent in the app registration",
    "500011": "the Exchange resource ({scope}) is not available in tenant {tenant}; check "
    "AUTHPOLICY_CLOUD (the tenant may be in another cloud)",
    "1002012": "the scope {scope} is not valid",
    "50053": "the app's sign-ins are locked out; try again later",
    "50034": "the account does not exist in tenant {tenant}",
    "53003": "Conditional Access blocked the app's sign-in",
}
_AADSTS = re.compile(r"AADSTS(\d+)")


def describe_msal_error(result: Mapping[str, Any], settings: ConnectionSettings) -> str:
    """One line for a failed msal token result: what Entra ID said and what to do."""
    description = str(result.get("error_description") or "")
    error = str(result.get("error") or "error")
    codes = [str(c) for c in (result.get("error_codes") or [])]
    match = _AADSTS.search(description)
    if match:
        codes.insert(0, match.group(1))
    fields = {
        "client_id": settings.client_id,
        "tenant": settings.tenant,
        "scope": settings.token_scope,
    }
    for code in codes:
        hint = _AADSTS_HINTS.get(code)
        if hint:
            return redact(
                f"Entra ID refused the token request (AADSTS{code}): {hint.format(**fields)}"
            )
    first_line = description.strip().splitlines()[0] if description.strip() else error
    first_line = first_line.split(" Trace ID:")[0]
    if error == "invalid_client":
        return redact(
            f"Entra ID refused the app's credential ({first_line}); check AZURE_CLIENT_ID and the "
            "secret, certificate or federated token"
        )
    if error in ("unauthorized_client", "consent_required"):
        return redact(
            f"Entra ID refused app {settings.client_id} ({first_line}); grant admin consent for "
            "Exchange.ManageAsApp"
        )
    return redact(f"Entra ID refused the token request ({error}): {first_line}")


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str = ""
    expires_at: float = 0.0  # time.monotonic() deadline
    lifetime: float = 0.0
    claims: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        return f"AccessToken(expires_at={self.expires_at:.0f})"


class TokenProvider:
    """Thread-safe access tokens for one app, tenant and scope."""

    def __init__(
        self,
        settings: ConnectionSettings,
        client_credential: str | dict[str, Any],
        http_client: requests.Session,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._credential = client_credential
        self._http = http_client
        self._clock = clock
        self._lock = threading.Lock()
        self._app: Any = None
        self._current = AccessToken()
        self._claims_challenge: str | None = None
        self.acquired = 0  # tokens obtained (for tests and diagnostics)

    # -- msal ----------------------------------------------------------------------------------

    def _msal_app(self) -> Any:
        if self._app is not None:
            return self._app
        import msal  # imported lazily: it is slow to import and plan --help does not need it

        kwargs: dict[str, Any] = {
            "client_id": self.settings.client_id,
            "client_credential": self._credential,
            "authority": self.settings.authority,
            "http_client": self._http,
            "token_cache": msal.TokenCache(),
        }
        if self.settings.endpoint:
            # An authority host msal does not know would be checked with
            # login.microsoftonline.com, unreachable offline (DESIGN.md, Connection).
            kwargs["instance_discovery"] = False
        try:
            self._app = msal.ConfidentialClientApplication(**kwargs)
        except ValueError as exc:
            raise AuthenticationError(self._authority_problem(str(exc))) from None
        except requests.exceptions.SSLError:
            raise self._tls_problem(self.settings.authority) from None
        except requests.exceptions.RequestException as exc:
            raise AuthenticationError(
                f"cannot reach the Entra ID authority {self.settings.authority} "
                f"({root_cause_name(exc)}); check AUTHPOLICY_ENDPOINT / AUTHPOLICY_CLOUD and the "
                "network"
            ) from None
        return self._app

    def _authority_problem(self, text: str) -> str:
        lowered = text.lower()
        if "tenant" in lowered or "authority" in lowered or "openid" in lowered:
            return (
                f"Entra ID does not know tenant {self.settings.tenant} at "
                f"{self.settings.authority}; check AZURE_TENANT_ID (the tenant GUID or the initial "
                "*.onmicrosoft.com domain) and AUTHPOLICY_CLOUD"
            )
        return redact(f"msal refused the settings: {text.splitlines()[0] if text else 'error'}")

    def _tls_problem(self, url: str) -> ConnectionSettingsError:
        return ConnectionSettingsError(
            f"TLS verification of {url} failed: its certificate is not trusted; set "
            "AUTHPOLICY_CA_BUNDLE to the CA that signed it (verification cannot be turned off)"
        )

    # -- tokens --------------------------------------------------------------------------------

    def _fresh_enough(self, token: AccessToken) -> bool:
        if not token.token:
            return False
        # Refresh with a quarter of the life left (at most 5 minutes before expiry), so a page
        # never leaves with a token about to expire in flight.
        margin = min(300.0, token.lifetime / 4)
        return self._clock() < token.expires_at - margin

    def get(self) -> str:
        """A valid access token (cached while fresh)."""
        current = self._current
        if self._fresh_enough(current):
            return current.token
        with self._lock:
            if not self._fresh_enough(self._current):
                self._current = self._acquire(force=False)
            return self._current.token

    def invalidate(self, token: str, claims_challenge: str | None = None) -> None:
        """Drop `token` (Exchange refused it): the next `get` fetches a new one from Entra ID,
        asking for `claims_challenge` when the 401 carried one.

        Only the token that failed is dropped, so several threads hitting 401 at once cause one
        refresh, not one each.
        """
        with self._lock:
            if self._current.token == token:
                self._current = AccessToken()
                self._claims_challenge = claims_challenge
                if self._app is not None:
                    self._app.remove_tokens_for_client()

    def claims(self) -> Mapping[str, Any]:
        """The current token's claims (unverified: for messages and tenant facts only)."""
        self.get()
        return self._current.claims or {}

    def _acquire(self, force: bool) -> AccessToken:
        app = self._msal_app()
        started = self._clock()
        try:
            challenge, self._claims_challenge = self._claims_challenge, None
            if challenge:
                result = app.acquire_token_for_client(
                    scopes=[self.settings.token_scope], claims_challenge=challenge
                )
            else:
                result = app.acquire_token_for_client(scopes=[self.settings.token_scope])
        except (ConnectionSettingsError, AuthenticationError):
            raise  # e.g. the federated token file vanished
        except requests.exceptions.SSLError:
            raise self._tls_problem(self.settings.authority) from None
        except requests.exceptions.RequestException as exc:
            raise AuthenticationError(
                f"cannot reach the Entra ID token endpoint of {self.settings.authority} "
                f"({root_cause_name(exc)}); check AUTHPOLICY_ENDPOINT / AUTHPOLICY_CLOUD and the "
                "network"
            ) from None
        except ValueError as exc:
            raise AuthenticationError(self._authority_problem(str(exc))) from None
        if not isinstance(result, dict) or "access_token" not in result:
            raise AuthenticationError(describe_msal_error(result or {}, self.settings))
        token = str(result["access_token"])
        register_secret(token)
        lifetime = float(result.get("expires_in") or 3600)
        self.acquired += 1
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            claims = {}
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            # `exp` may come earlier than expires_in suggests (whole seconds, clock skew).
            lifetime = max(0.0, min(lifetime, float(exp) - time.time()))
        log.debug(
            "token acquired from %s (%s), expires in %.0fs",
            result.get("token_source"),
            self.settings.authority,
            lifetime,
        )
        return AccessToken(token, started + lifetime, lifetime, claims)
