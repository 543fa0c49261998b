"""The Microsoft Graph room: `GET /v1.0/auditLogs/signIns` (round2-facts.md §2).

What Graph checks, in its order: a bearer token for this cloud's Graph audience and tenant
(401 InvalidAuthenticationToken), the AuditLog.Read.All application role (403
Authorization_RequestDenied), the tenant's Entra ID P1/P2 licence (403
Authentication_RequestFromNonPremiumTenantOrB2CTenant), its own throttling budget (429 with
Retry-After), then the `$filter` (400 on a clause it does not know). Pages hold at most
`graph_page_size` (<= 1000, and `$top`), newest first; `@odata.nextLink` is a full URL with a
`$skiptoken` that works once. Only the last `sign_in_retention_days` days are kept.

It answers `(status, body, headers)`; the HTTPS front (`server.py`) writes it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.emulator.signins import SignIn, generate_sign_ins

GraphAnswer = tuple[int, dict[str, Any] | None, dict[str, str]]
MAX_TOP = 1000
SIGN_IN_ROLE = "AuditLog.Read.All"
CA_ROLE = "Policy.Read.All"
_CA_NAMESPACE = uuid.UUID("2f0e9c56-7f3b-4d2e-9b8a-1c6d5e4f3a21")
ROLE_GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"


class FilterError(ValueError):
    """A $filter Graph would refuse (400)."""


# ------------------------------------------------------------------ the $filter subset
_TOKEN = re.compile(r"\s*(\(|\)|'(?:[^']|'')*'|[A-Za-z_/]+|[0-9TZ:.+-]+)")
Predicate = Callable[[SignIn], bool]
_FIELDS: dict[str, Callable[[SignIn], Any]] = {
    "createddatetime": lambda e: e.created,
    "clientappused": lambda e: e.client_app,
    "userprincipalname": lambda e: e.upn.lower(),
    "userid": lambda e: e.user_id.lower(),
    "status/errorcode": lambda e: e.error_code,
    "appdisplayname": lambda e: e.app,
}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise FilterError(f"Invalid filter clause: unexpected text at {text[pos : pos + 20]!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


class _Parser:
    """expr := term ('or' term)* ; term := atom ('and' atom)* ; atom := '(' expr ')' | cmp."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def parse(self) -> Predicate:
        predicate = self.expr()
        if self.pos != len(self.tokens):
            raise FilterError(f"Invalid filter clause near {self.tokens[self.pos]!r}")
        return predicate

    def _peek(self) -> str:
        return self.tokens[self.pos].lower() if self.pos < len(self.tokens) else ""

    def _take(self) -> str:
        if self.pos >= len(self.tokens):
            raise FilterError("Invalid filter clause: it ends too early")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self._peek() == "or":
            self._take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def term(self) -> Predicate:
        parts = [self.atom()]
        while self._peek() == "and":
            self._take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def atom(self) -> Predicate:
        if self._peek() == "(":
            self._take()
            inner = self.expr()
            if self._take() != ")":
                raise FilterError("Invalid filter clause: a parenthesis is not closed")
            return inner
        name = self._take().lower()
        getter = _FIELDS.get(name)
        if getter is None:
            raise FilterError(f"Invalid filter clause: property '{name}' is not supported")
        op = self._take().lower()
        raw = self._take()
        if raw.startswith("'"):
            value: Any = raw[1:-1].replace("''", "'")
            if name in ("userprincipalname", "userid"):
                value = value.lower()
        elif name == "status/errorcode":
            try:
                value = int(raw)
            except ValueError:
                raise FilterError(f"Invalid filter clause: {raw!r} is not a number") from None
        elif name == "createddatetime":
            try:
                when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise FilterError(f"Invalid filter clause: {raw!r} is not a date") from None
            value = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            raise FilterError(f"Invalid filter clause: {raw!r} must be quoted")
        ops: dict[str, Callable[[Any, Any], bool]] = {
            "eq": lambda a, b: a == b,
            "ne": lambda a, b: a != b,
            "ge": lambda a, b: a >= b,
            "gt": lambda a, b: a > b,
            "le": lambda a, b: a <= b,
            "lt": lambda a, b: a < b,
        }
        compare = ops.get(op)
        if compare is None:
            raise FilterError(f"Invalid filter clause: operator '{op}' is not supported")
        return lambda e: compare(getter(e), value)


_UPPER = re.compile(r"createdDateTime\s+le\s", re.IGNORECASE)
# A filter that is `createdDateTime ge A [and createdDateTime le B] and (...)` and nothing else
# selects only events in [A, B]: those are found by bisection in the log (newest first), and
# the whole predicate is still tested on them (so the answer is the scan's, item for item).
_WINDOW = re.compile(
    r"\s*createdDateTime\s+ge\s+(\S+)\s+and\s+(?:createdDateTime\s+le\s+(\S+)\s+and\s+)?(?=\()",
    re.IGNORECASE,
)


def _one_group(text: str) -> bool:
    """Is `text` one parenthesized group (its first parenthesis closed by its last char)?"""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i == len(text.rstrip()) - 1
    return False


def _within(events: list[SignIn], text: str) -> list[SignIn]:
    """The events a window filter can select (all of them when `text` is not one)."""
    found = _WINDOW.match(text)
    if found is None or not _one_group(text[found.end() :]):
        return events
    try:
        since = _stamp(found.group(1))
        until = _stamp(found.group(2)) if found.group(2) else None
    except ValueError:
        return events
    keys = [e.created for e in reversed(events)]  # oldest first
    first = bisect.bisect_left(keys, since)
    last = bisect.bisect_right(keys, until) if until is not None else len(keys)
    size = len(events)
    return events[size - last : size - first]


def _stamp(raw: str) -> str:
    when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_filter(text: str) -> Predicate:
    """The predicate of a signIns `$filter` (FilterError when Graph would answer 400)."""
    return _Parser(text).parse()


# ------------------------------------------------------------------ the room
@dataclass
class _GraphCursor:
    events: list[SignIn]
    offset: int
    top: int
    created: float


class GraphRoom:
    """Graph's sign-in log for one tenant. Thread-safe."""

    def __init__(self, settings: Callable[[], Any], state: Callable[[], Any]) -> None:
        self._settings = settings
        self._state = state
        self._lock = threading.Lock()
        self._events: list[SignIn] = []
        self._made_for: Any = None
        self._cursors: dict[str, _GraphCursor] = {}
        self._throttle = (0.0, 0)

    def events(self) -> list[SignIn]:
        """The log (made from the tenant the first time it is asked for, or after a reset)."""
        state = self._state()
        with self._lock:
            if self._made_for is not state:
                settings = self._settings()
                self._events = generate_sign_ins(
                    state,
                    dt.datetime.now(dt.UTC),
                    seed=settings.seed,
                    days=settings.sign_in_retention_days,
                    scanner_minutes=settings.sign_in_scanner_minutes,
                    extra=settings.sign_in_extra_events,
                )
                self._made_for = state
            return self._events

    def _throttled(self) -> float | None:
        settings = self._settings()
        budget = settings.graph_throttle_budget
        if budget <= 0:
            return None
        now = time.monotonic()
        window = settings.throttle_window_seconds
        with self._lock:
            start, used = self._throttle
            if now - start >= window:
                start, used = now, 0
            if used >= budget:
                return max(0.001, window - (now - start))
            self._throttle = (start, used + 1)
        return None

    def sign_ins(
        self, claims: dict[str, Any] | None, reason: str, query: dict[str, list[str]], base: str
    ) -> GraphAnswer:
        """One GET of the sign-in log; `claims` None when the token did not verify."""
        settings = self._settings()
        if claims is None:
            return _error(401, "InvalidAuthenticationToken", reason or "Access token is empty.")
        if SIGN_IN_ROLE not in (claims.get("roles") or []):
            return _error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        if not settings.graph_premium_licence:
            return _error(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        wait = self._throttled()
        if wait is not None:
            status, body, headers = _error(
                429, "TooManyRequests", "Too many requests, please retry later."
            )
            return status, body, {**headers, "Retry-After": str(max(1, round(wait)))}
        started = time.monotonic()
        try:
            answer = self._page(query, base, settings)
        finally:
            delay = settings.graph_latency_ms / 1000.0 - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
        return answer

    def conditional_access(
        self, claims: dict[str, Any] | None, reason: str, base: str
    ) -> GraphAnswer:
        """GET identity/conditionalAccess/policies (one page: a tenant holds few)."""
        settings = self._settings()
        if claims is None:
            return _error(401, "InvalidAuthenticationToken", reason or "Access token is empty.")
        if CA_ROLE not in (claims.get("roles") or []):
            return _error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        if not settings.graph_premium_licence:
            # Unverified how Graph answers a tenant without P1 here; the pessimistic reading is
            # that it refuses, as it does for the sign-in log.
            return _error(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        wait = self._throttled()
        if wait is not None:
            status, body, headers = _error(
                429, "TooManyRequests", "Too many requests, please retry later."
            )
            return status, body, {**headers, "Retry-After": str(max(1, round(wait)))}
        return (
            200,
            {
                "@odata.context": f"{base}/v1.0/$metadata#identity/conditionalAccess/policies",
                "value": conditional_access_policies(settings, self._state()),
            },
            {},
        )

    def _page(self, query: dict[str, list[str]], base: str, settings: Any) -> GraphAnswer:
        tokens = query.get("$skiptoken")
        if tokens:
            token = tokens[0]
            with self._lock:
                cursor = self._cursors.pop(token, None)  # a skiptoken works once
            if cursor is None or time.monotonic() - cursor.created > settings.cursor_expiry_seconds:
                return _error(400, "Request_BadRequest", "The skip token is invalid or expired.")
        else:
            try:
                top = int((query.get("$top") or [str(MAX_TOP)])[0])
            except ValueError:
                return _error(400, "Request_BadRequest", "Invalid value for $top.")
            if not 1 <= top <= MAX_TOP:
                return _error(400, "Request_BadRequest", f"$top must be between 1 and {MAX_TOP}.")
            try:
                text = (query.get("$filter") or [""])[0]
                if settings.graph_date_upper_bound == "refused" and _UPPER.search(text):
                    raise FilterError("Invalid filter clause: operator 'le' is not supported")
                predicate = parse_filter(text) if text.strip() else None
            except FilterError as exc:
                return _error(400, "Request_UnsupportedQuery", str(exc))
            kept = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.sign_in_retention_days)
            oldest = kept.strftime("%Y-%m-%dT%H:%M:%SZ")
            matched = [
                e
                for e in _within(self.events(), text)
                if e.created >= oldest and (predicate is None or predicate(e))
            ]
            cursor = _GraphCursor(matched, 0, top, time.monotonic())
        size = min(cursor.top, settings.graph_page_size)
        stop = cursor.offset + size
        value = [e.as_graph() for e in cursor.events[cursor.offset : stop]]
        body: dict[str, Any] = {
            "@odata.context": f"{base}/v1.0/$metadata#auditLogs/signIns",
            "value": value,
        }
        if stop < len(cursor.events):
            next_token = secrets.token_urlsafe(18)
            with self._lock:
                self._cursors[next_token] = _GraphCursor(
                    cursor.events, stop, cursor.top, time.monotonic()
                )
            body["@odata.nextLink"] = (
                f"{base}/v1.0/auditLogs/signIns?$top={cursor.top}&$skiptoken={next_token}"
            )
        return 200, body, {}


def _ca_policy(
    name: str,
    state: str,
    clients: list[str],
    grant: list[str],
    users: dict[str, list[str]],
) -> dict[str, Any]:
    conditions_users = {
        "includeUsers": [],
        "excludeUsers": [],
        "includeGroups": [],
        "excludeGroups": [],
        "includeRoles": [],
        "excludeRoles": [],
        **users,
    }
    return {
        "id": str(uuid.uuid5(_CA_NAMESPACE, name)),
        "displayName": name,
        "state": state,
        "createdDateTime": "2025-03-04T09:00:00Z",
        "conditions": {
            "clientAppTypes": clients,
            "applications": {"includeApplications": ["All"], "excludeApplications": []},
            "users": conditions_users,
        },
        "grantControls": {"operator": "OR", "builtInControls": grant},
    }


def conditional_access_policies(settings: Any, state: Any) -> list[dict[str, Any]]:
    """The tenant's Conditional Access policies as Graph shows them: an MFA policy for admins
    always (which a legacy-auth check must not mistake for a block), plus the legacy-auth block
    that `conditional_access` names, excluding `conditional_access_exclude` by user id."""
    policies = [
        _ca_policy(
            "Require MFA for administrators",
            "enabled",
            ["browser", "mobileAppsAndDesktopClients"],
            ["mfa"],
            {"includeRoles": [ROLE_GLOBAL_ADMINISTRATOR]},
        )
    ]
    shape = settings.conditional_access
    if shape == "none":
        return policies
    excluded = []
    for upn in settings.conditional_access_exclude:
        user = state.find_user(upn, allow_external_id=True)
        if user is not None:
            excluded.append(user["ExternalDirectoryObjectId"])
    clients = ["other"] if shape == "block_smtp_only" else ["exchangeActiveSync", "other"]
    policies.append(
        _ca_policy(
            "Block legacy authentication",
            "enabledForReportingButNotEnforced" if shape == "report_only" else "enabled",
            clients,
            ["block"],
            {"includeUsers": ["All"], "excludeUsers": excluded},
        )
    )
    return policies


def _error(status: int, code: str, message: str) -> GraphAnswer:
    """Microsoft Graph's error envelope."""
    return status, {"error": {"code": code, "message": message, "innerError": {}}}, {}
