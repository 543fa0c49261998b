"""`authpolicy doctor`'s checks: can this app, with these credentials, do what authpolicy needs?

Each check is one line with what was found and, when it fails, the fix. Nothing here writes to
the tenant: even a "harmless" write lands in the unified audit log and is a write no plan showed.
The app's Exchange role is read from its role assignments as Entra puts them in the token
(`wids`: directory role template ids), which needs no extra permission.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.errors import AuthPolicyError
from reconciler.model import SnapshotNeeds

Status = Literal["ok", "warn", "FAIL"]

# Directory roles (template ids) that give an app Exchange access, and what they allow.
EXCHANGE_ROLES: dict[str, tuple[str, bool]] = {
    "29232cdf-9323-42fd-ade2-1d097af3e4de": ("Exchange Administrator", True),
    "62e90394-69f5-4237-9190-012177145e10": ("Global Administrator", True),
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": ("Global Reader", False),
    "31392ffb-586c-42d1-9346-e59415a2cc4e": ("Exchange Recipient Administrator", False),
}
MANAGE_AS_APP = "Exchange.ManageAsApp"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


def run_checks(args: Any, environ: Mapping[str, str] = os.environ) -> list[Check]:
    """Every check in order; a check that cannot run because an earlier one failed is left out
    (its cause is already on screen)."""
    return list(_checks(args, environ))


def _checks(args: Any, environ: Mapping[str, str]) -> Iterator[Check]:
    from reconciler.tenant.connect import connection_settings, open_tenant

    try:
        settings = connection_settings(args, environ)
        tenant = open_tenant(args, environ)
    except AuthPolicyError as exc:
        yield Check("credentials", "FAIL", str(exc))
        return
    credential = settings.credential
    yield Check(
        "credentials",
        "ok",
        f"app {settings.client_id}, {credential.kind} from {credential.origin or credential.kind}",
    )
    client = tenant.client  # type: ignore[attr-defined]
    try:
        client.tokens.get()
        claims = client.tokens.claims()
    except AuthPolicyError as exc:
        yield Check("token", "FAIL", str(exc))
        return
    yield Check("token", "ok", f"Entra ID issued a token for {settings.token_scope}")
    yield _cloud_check(settings, claims)
    role = _role_check(claims)
    yield role
    if role.status == "FAIL":
        return
    try:
        snapshot = tenant.read_snapshot(SnapshotNeeds(users=False))
    except AuthPolicyError as exc:
        yield Check("read access", "FAIL", str(exc))
        return
    default = f'default "{snapshot.default_policy}"' if snapshot.default_policy else "no default"
    yield Check(
        "read access",
        "ok",
        f"Get-AuthenticationPolicy ({len(snapshot.policies)} policies) and "
        f"Get-OrganizationConfig ({default})",
    )
    yield from _graph_check(settings, client, environ)


def _cloud_check(settings: Any, claims: Mapping[str, Any]) -> Check:
    expected = settings.token_resource
    audience = str(claims.get("aud") or "").rstrip("/")
    if audience.lower() != expected.lower():
        return Check(
            "cloud",
            "FAIL",
            f"the token is for {audience or '(no audience)'}, not {expected}; check "
            f"AUTHPOLICY_CLOUD (now {settings.cloud.name})",
        )
    tid = str(claims.get("tid") or "")
    if settings.tenant.count("-") == 4 and tid and tid.lower() != settings.tenant.lower():
        return Check(
            "cloud",
            "FAIL",
            f"the token is for tenant {tid}, not {settings.tenant}; check AZURE_TENANT_ID",
        )
    return Check("cloud", "ok", f"{settings.cloud.name}: Exchange {expected}, tenant {tid}")


def _role_check(claims: Mapping[str, Any]) -> Check:
    roles = claims.get("roles") or []
    if MANAGE_AS_APP not in roles:
        return Check(
            "Exchange role",
            "FAIL",
            "the app has no Exchange.ManageAsApp application permission; add it (Office 365 "
            "Exchange Online API) and grant admin consent",
        )
    found = [EXCHANGE_ROLES[w] for w in claims.get("wids") or [] if w in EXCHANGE_ROLES]
    if not found:
        return Check(
            "Exchange role",
            "FAIL",
            "the app holds no Exchange directory role; assign Exchange Administrator (apply) or "
            "Global Reader (plan, drift, report) to its service principal",
        )
    names = ", ".join(sorted(name for name, _ in found))
    if any(writes for _, writes in found):
        return Check("Exchange role", "ok", f"{names}: plan, drift, report and apply")
    return Check(
        "Exchange role",
        "warn",
        f"{names}: read only (plan, drift, report); apply needs Exchange Administrator",
    )


def _graph_check(settings: Any, client: Any, environ: Mapping[str, str]) -> Iterator[Check]:
    """A token for the cloud's Graph, then one sign-in (evidence: who really uses Basic auth)
    and the Conditional Access policies (CIS 5.2.2.3, and whether CA defeats an SMTP AUTH
    exception). Optional: a failure is a warning, since only evidence and baseline need it."""
    from reconciler.tenant.exo.auth import TokenProvider
    from reconciler.tenant.exo.credentials import msal_client_credential
    from reconciler.tenant.graph import (
        CA_PERMISSION,
        SIGN_IN_PERMISSION,
        graph_base,
        graph_scope,
    )

    base = graph_base(settings)
    graph_settings = dataclasses.replace(settings, scope=graph_scope(settings))
    tokens = TokenProvider(
        graph_settings, msal_client_credential(settings.credential, environ), client.session
    )
    try:
        token = tokens.get()
    except AuthPolicyError as exc:
        yield Check(
            "Graph", "warn", f"no Graph token ({exc}); evidence and baseline checks will be missing"
        )
        return
    for name, path, permission, ok, missing in (
        (
            "Graph sign-in log",
            "/v1.0/auditLogs/signIns?$top=1",
            SIGN_IN_PERMISSION,
            "sign-ins can be read for evidence",
            "plans will say why evidence is missing",
        ),
        (
            "Graph Conditional Access",
            "/v1.0/identity/conditionalAccess/policies",
            CA_PERMISSION,
            "policies can be read (CIS 5.2.2.3; SMTP AUTH exceptions CA would block)",
            "report --baseline leaves CIS 5.2.2.3 not assessed",
        ),
    ):
        yield _graph_get(client, f"{base}{path}", token, name, permission, ok, missing)


def _graph_get(
    client: Any, url: str, token: str, name: str, permission: str, ok: str, missing: str
) -> Check:
    from reconciler.tenant.graph import LICENCE_ERROR

    try:
        answer = client.session.get(
            url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=(15, 60),
            allow_redirects=False,
        )
    except Exception as exc:  # a connection failure is a finding here, not a crash
        return Check(name, "warn", f"{url.split('?')[0]} did not answer ({type(exc).__name__})")
    if answer.status_code == 200:
        return Check(name, "ok", f"{permission}: {ok}")
    code = ""
    with contextlib.suppress(ValueError, AttributeError):
        code = str(answer.json().get("error", {}).get("code", ""))
    if code == LICENCE_ERROR:
        what = "the sign-in log" if "sign-in" in name else "Conditional Access"
        fix = f"the tenant has no Entra ID P1/P2 licence; {what} needs one"
    elif answer.status_code == 403:
        fix = f"grant the app {permission} (Microsoft Graph, application) and consent"
    else:
        fix = f"Graph answered {answer.status_code} {code}".rstrip()
    return Check(name, "warn", f"{fix}; {missing}")
