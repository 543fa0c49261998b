"""The Entra sign-in log through Microsoft Graph: who really used Basic auth (evidence).

`SignInReader.read(days)` GETs `/v1.0/auditLogs/signIns`, filtered on the server to the window
and to the legacy `clientAppUsed` values (round2-facts.md §2), follows `@odata.nextLink` (only
to this cloud's Graph host, the configured endpoint or AUTHPOLICY_TRUSTED_HOSTS: a token is
sent nowhere else), waits out 429 `Retry-After`, retries 5xx and dropped connections, and folds
the events into per-user, per-protocol counts as the pages arrive (a page is the most it holds).

Like the Get-User cursor, the log's nextLink arrives with the page before it, so one cursor
waits page after page. With `concurrency` > 1 the window is read in time slices side by side
(`ge` its start, `le` the next one's start: every instant in one slice, or in two at a shared
bound, where repeats are dropped by event id), and on one cursor when Graph refuses the
upper bound (400). Any slice that fails makes the whole log "missing": never a partial count.

It never raises for what the service says: a missing permission, a tenant without an Entra ID
P1/P2 licence, a token Graph refuses or a Graph that does not answer each become a "missing"
log with a one-line reason, so a plan that does not need evidence never fails for it. TLS and
the session are the Exchange client's own (`VerifiedSession`); tokens have Graph's scope.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from reconciler.errors import AuthPolicyError
from reconciler.model import (
    CLIENT_APP_PROTOCOL,
    OTHER,
    OTHER_CLIENTS,
    CaPolicy,
    ConditionalAccessRead,
    ProtocolUse,
    SignInUsage,
    TenantUser,
)
from reconciler.tenant.exo.retry import Attempts, RetryPolicy, parse_retry_after
from reconciler.tenant.exo.settings import ConnectionSettings, on_trusted_origin, origin_of

log = logging.getLogger(__name__)

SIGN_IN_PERMISSION = "AuditLog.Read.All"
CA_PERMISSION = "Policy.Read.All"
LICENCE_ERROR = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
PAGE_SIZE = 1000  # Graph's most per page for signIns
# The most pages one read follows: 30 days of a busy tenant's legacy sign-ins is far fewer.
MAX_PAGES = 100_000


class _Missing(Exception):
    """The log cannot be read; the message is the one-line reason."""


class _SliceStopped(_Missing):
    """Another slice of the log failed: this one stopped between pages."""


class _Refused(_Missing):
    """Graph answered 400 (a $filter it does not take): a windowed read falls back to one."""


def sign_in_filter(since: str, until: str | None = None) -> str:
    """The server-side $filter: the window (from `since`, up to and including `until`), and
    every legacy client value (OR-ed)."""
    apps = [*CLIENT_APP_PROTOCOL, OTHER_CLIENTS]
    clients = " or ".join(f"clientAppUsed eq '{app}'" for app in apps)
    upper = f" and createdDateTime le {until}" if until is not None else ""
    return f"createdDateTime ge {since}{upper} and ({clients})"


def windows(start: dt.datetime, end: dt.datetime, count: int) -> list[tuple[str, str | None]]:
    """`count` consecutive slices of [start, end] as (since, until) filter bounds: each slice
    from its start up to and including the next one's (the last open-ended, as one read's
    would be), so every instant is in one slice, or two at a shared bound (repeats there are
    dropped by event id). Whole seconds: the form the filter takes."""
    step = max((end - start) / max(count, 1), dt.timedelta(seconds=1))
    bounds: list[dt.datetime] = []
    at = start
    while at < end and len(bounds) < count:
        bounds.append(at)
        at = (at + step).replace(microsecond=0)
    stamps = [b.strftime("%Y-%m-%dT%H:%M:%SZ") for b in bounds]
    return [(s, stamps[i + 1] if i + 1 < len(stamps) else None) for i, s in enumerate(stamps)]


@dataclass
class _Tally:
    """Counts for one user, built as events arrive: [count, last, failures, last_failure]."""

    upn: str
    uses: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, protocol: str, when: str, ok: bool) -> None:
        use = self.uses.get(protocol)
        if use is None:
            use = self.uses[protocol] = [0, None, 0, None]
        if ok:
            use[0] += 1
            if use[1] is None or when > use[1]:
                use[1] = when
        else:
            use[2] += 1
            if use[3] is None or when > use[3]:
                use[3] = when

    def frozen(self) -> dict[str, ProtocolUse]:
        return {p: ProtocolUse(u[0], u[1], u[2], u[3]) for p, u in sorted(self.uses.items())}


@dataclass(frozen=True, slots=True)
class SignInLog:
    """The window as read, keyed by the sign-in's userId (lower case) else its UPN."""

    status: str  # "read" | "missing"
    days: int
    since: str
    reason: str = ""
    tallies: Mapping[str, _Tally] = field(default_factory=dict)
    events: int = 0
    requests: int = 0

    def joined(self, users: Iterable[TenantUser]) -> SignInUsage:
        """Sign-ins joined to users by Entra object id (ExternalDirectoryObjectId), else UPN."""
        if self.status != "read":
            return SignInUsage(
                "missing", self.days, self.since, self.reason, requests=self.requests
            )
        by_id: dict[str, str] = {}
        by_upn: dict[str, str] = {}
        for user in users:
            by_id[user.id.lower()] = user.id
            by_upn[user.upn.casefold()] = user.id
        by_user: dict[str, dict[str, ProtocolUse]] = {}
        unjoined = 0
        for key, tally in self.tallies.items():
            user_id = by_id.get(key) or by_upn.get(tally.upn.casefold())
            if user_id is None:
                unjoined += sum(u[0] + u[2] for u in tally.uses.values())
                continue
            uses = tally.frozen()
            if user_id in by_user:  # one user under two keys (an id, and a UPN only)
                uses = _merge(by_user[user_id], uses)
            by_user[user_id] = uses
        return SignInUsage(
            "read",
            self.days,
            self.since,
            by_user=by_user,
            events=self.events,
            unjoined=unjoined,
            requests=self.requests,
        )


def _merge(a: Mapping[str, ProtocolUse], b: Mapping[str, ProtocolUse]) -> dict[str, ProtocolUse]:
    out = dict(a)
    for protocol, use in b.items():
        old = out.get(protocol)
        if old is None:
            out[protocol] = use
            continue
        out[protocol] = ProtocolUse(
            old.count + use.count,
            max(filter(None, (old.last, use.last)), default=None),
            old.failures + use.failures,
            max(filter(None, (old.last_failure, use.last_failure)), default=None),
        )
    return out


class _GraphReader:
    """One GET at a time against this cloud's Graph, with retries (the module docstring)."""

    # What the reads are about and the permission they need, for the one-line reasons.
    what = "Graph"
    permission = SIGN_IN_PERMISSION

    def __init__(
        self,
        settings: ConnectionSettings,
        tokens: Any,  # a TokenProvider for the cloud's Graph scope
        session: requests.Session,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (15.0, 300.0),
        clock: Callable[[], dt.datetime] | None = None,
        on_throttle: Callable[[float | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.session = session
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.on_throttle = on_throttle
        self.base = graph_base(settings)
        self.trusted = frozenset(
            {origin_of(self.base)} | {origin_of(f"https://{h}") for h in settings.trusted_hosts}
        )
        self.requests = 0
        self._counting = threading.Lock()  # slices read side by side count their requests

    # ------------------------------------------------------------------ one GET, with retries

    def _get(self, url: str) -> dict[str, Any]:
        attempts = Attempts(self.retry)
        refreshed = False
        while True:
            attempts.start()
            try:
                token = self.tokens.get()
            except AuthPolicyError as exc:
                raise _Missing(f"no Graph token ({exc})") from None
            with self._counting:
                self.requests += 1
            try:
                answer = self.session.get(
                    url,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    timeout=self.timeout,
                    allow_redirects=False,  # a redirect would carry the token elsewhere
                )
            except requests.exceptions.SSLError:
                raise _Missing(
                    f"TLS verification of {origin_of(url)} failed (set AUTHPOLICY_CA_BUNDLE to "
                    "the CA that signed it)"
                ) from None
            except requests.exceptions.RequestException as exc:
                delay = attempts.may_retry_failure()
                if delay is None:
                    raise _Missing(
                        f"Graph did not answer ({type(exc).__name__}) after {attempts.count} tries"
                    ) from None
                attempts.wait(delay)
                continue
            status = answer.status_code
            if status == 200:
                try:
                    doc = answer.json()
                except ValueError:
                    doc = None
                if isinstance(doc, dict):
                    return doc
                raise _Missing(f"Graph answered a {self.what} page that is not a JSON object")
            code, message = _error_of(answer)
            if status == 429:
                retry_after = parse_retry_after(answer.headers.get("Retry-After"))
                if self.on_throttle is not None:
                    self.on_throttle(retry_after)
                delay = attempts.may_retry_throttled(retry_after)
                if delay is None:
                    raise _Missing(
                        f"Graph kept throttling the {self.what} read ({attempts.count} tries)"
                    )
                attempts.wait(delay)
                continue
            if status == 400:
                raise _Refused(_explain(status, code, message, self.permission, self.what))
            if status in (500, 502, 503, 504):
                delay = attempts.may_retry_failure()
                if delay is None:
                    raise _Missing(f"Graph answered {status} {attempts.count} times")
                attempts.wait(delay)
                continue
            if status == 401 and not refreshed:
                refreshed = True  # an expired or revoked token: one fresh one, once
                self.tokens.invalidate(token)
                continue
            raise _Missing(_explain(status, code, message, self.permission, self.what))


class SignInReader(_GraphReader):
    """Reads one tenant's sign-in log (see the module docstring)."""

    what = "sign-in log"
    permission = SIGN_IN_PERMISSION

    # Time slices read side by side (set from --read-concurrency; 1: one read of the window).
    concurrency = 1
    SLICES_PER_CURSOR = 2  # the busiest slices (sign-ins are uneven in time) even out

    def read(self, days: int) -> SignInLog:
        """The last `days` days of legacy sign-ins, or a "missing" log saying why: on one
        cursor, or in time slices read side by side (falling back to one cursor when Graph
        refuses a slice's upper bound)."""
        now = self.clock().astimezone(dt.UTC).replace(microsecond=0)
        start = now - dt.timedelta(days=days)
        since = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        fold = _Folder()
        try:
            slices = []
            if self.concurrency > 1:
                slices = windows(start, now, self.concurrency * self.SLICES_PER_CURSOR)
            if len(slices) > 1:
                try:
                    self._read_slices(slices, fold)
                except _Refused as exc:
                    log.info("Graph refused a sign-in time slice (%s); reading on one cursor", exc)
                    fold = _Folder()
                    self._read_window(since, None, fold)
            else:
                self._read_window(since, None, fold)
        except _Missing as exc:
            log.info("sign-in evidence missing: %s", exc)
            return SignInLog("missing", days, since, str(exc), requests=self.requests)
        return SignInLog("read", days, since, "", fold.tallies, fold.events, self.requests)

    def _read_slices(self, slices: list[tuple[str, str | None]], fold: _Folder) -> None:
        """Every slice into `fold`, `concurrency` at a time; the first failure stops the
        others (between pages) and is raised: never a partial log."""
        stop = threading.Event()
        fold.bounds = frozenset(s[:19] for s, _ in slices[1:])  # where two slices meet
        with ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="read-sign-ins"
        ) as pool:
            futures = [pool.submit(self._read_window, s, u, fold, stop) for s, u in slices]
            failure: BaseException | None = None
            for future in as_completed(futures):
                try:
                    future.result()
                except _SliceStopped:
                    continue
                except BaseException as exc:  # every slice stops; the first failure is raised
                    if failure is None:
                        failure = exc
                        stop.set()
        if failure is not None:
            raise failure

    def _read_window(
        self,
        since: str,
        until: str | None,
        fold: _Folder,
        stop: threading.Event | None = None,
    ) -> None:
        url: str | None = (
            f"{self.base}/v1.0/auditLogs/signIns?$top={PAGE_SIZE}"
            f"&$filter={quote(sign_in_filter(since, until), safe='')}"
        )
        for _ in range(MAX_PAGES):
            if stop is not None and stop.is_set():
                raise _SliceStopped("another slice of the sign-in log failed")
            assert url is not None
            page = self._get(url)
            value = page.get("value")
            if not isinstance(value, list):
                raise _Missing("Graph answered a sign-in page without a `value` list")
            fold.page(value)
            link = page.get("@odata.nextLink")
            if not link:
                return
            url = self._check_link(str(link))
        raise _Missing(f"the sign-in log did not end after {MAX_PAGES:,} pages")

    def _check_link(self, link: str) -> str:
        parts = urlsplit(link)
        if not on_trusted_origin(link, self.trusted):
            raise _Missing(
                f"Graph's nextLink names {parts.scheme}://{parts.netloc}, not this cloud's Graph "
                "(nor AUTHPOLICY_TRUSTED_HOSTS); the token is never sent elsewhere"
            )
        if not parts.path.lower().startswith("/v1.0/auditlogs/signins"):
            raise _Missing(f"Graph's nextLink is not the sign-in log ({parts.path[:60]})")
        return link


class ConditionalAccessReader(_GraphReader):
    """Reads one tenant's Conditional Access policies (`identity/conditionalAccess/policies`,
    Policy.Read.All): the legacy-authentication block of CIS 5.2.2.3, and whether it defeats an
    `smtp_auth: enabled` exception. Like the sign-in read, it never raises for what the
    service says: it answers a "missing" read with the reason."""

    what = "Conditional Access"
    permission = CA_PERMISSION

    def read(self) -> ConditionalAccessRead:
        url: str | None = f"{self.base}/v1.0/identity/conditionalAccess/policies"
        policies: list[CaPolicy] = []
        try:
            for _ in range(100):  # a tenant holds at most a few hundred policies
                assert url is not None
                page = self._get(url)
                value = page.get("value")
                if not isinstance(value, list):
                    raise _Missing("Graph answered Conditional Access without a `value` list")
                policies.extend(p for p in map(ca_policy, value) if p is not None)
                link = page.get("@odata.nextLink")
                if not link:
                    break
                if not on_trusted_origin(str(link), self.trusted):
                    raise _Missing(
                        "Graph's nextLink for Conditional Access names another host; the token "
                        "is never sent elsewhere"
                    )
                url = str(link)
            else:
                raise _Missing("the Conditional Access policies did not end after 100 pages")
        except _Missing as exc:
            log.info("conditional access not read: %s", exc)
            return ConditionalAccessRead("missing", str(exc))
        return ConditionalAccessRead("read", "", tuple(policies))


def _ids(value: Any) -> frozenset[str]:
    return frozenset(str(v).lower() for v in value) if isinstance(value, list) else frozenset()


def _obj(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def ca_policy(doc: Any) -> CaPolicy | None:
    """A Graph conditionalAccessPolicy as a CaPolicy; None for what is not one."""
    if not isinstance(doc, dict):
        return None
    conditions = _obj(doc, "conditions")
    users = _obj(conditions, "users")
    apps = _obj(conditions, "applications")
    grant = _obj(doc, "grantControls")
    include_apps = apps.get("includeApplications")
    return CaPolicy(
        id=str(doc.get("id") or ""),
        name=str(doc.get("displayName") or doc.get("id") or "(unnamed)"),
        state=str(doc.get("state") or ""),
        client_app_types=frozenset(
            str(c) for c in conditions.get("clientAppTypes") or [] if isinstance(c, str)
        ),
        include_applications=frozenset(str(a) for a in include_apps)
        if isinstance(include_apps, list)
        else frozenset(),
        include_users=frozenset(
            str(u) if str(u) in ("All", "None", "GuestsOrExternalUsers") else str(u).lower()
            for u in users.get("includeUsers") or []
        ),
        exclude_users=_ids(users.get("excludeUsers")),
        include_groups=_ids(users.get("includeGroups")),
        exclude_groups=_ids(users.get("excludeGroups")),
        include_roles=_ids(users.get("includeRoles")),
        exclude_roles=_ids(users.get("excludeRoles")),
        blocks="block" in (grant.get("builtInControls") or []),
    )


def _error_of(answer: requests.Response) -> tuple[str, str]:
    try:
        error = answer.json().get("error") or {}
        return str(error.get("code") or ""), str(error.get("message") or "")[:200]
    except (ValueError, AttributeError):
        return "", ""


def _explain(
    status: int,
    code: str,
    message: str,
    permission: str = SIGN_IN_PERMISSION,
    what: str = "sign-in log",
) -> str:
    if code == LICENCE_ERROR:
        return f"the tenant has no Entra ID P1/P2 licence, which the {what} needs (Graph: {code})"
    if status == 403:
        return (
            f"the app may not read the {what}: grant it {permission} (Microsoft "
            f"Graph, application permission) and admin consent (Graph: {code or 403})"
        )
    if status == 401:
        return f"Graph refused the app's token ({code or 401}): check the app's consent"
    return f"Graph answered {status} {code} {message}".rstrip()


class _Folder:
    """Events folded into per-user tallies, page by page, from any number of slices. An
    event stamped in the second of a bound two slices share is counted once, by its id."""

    def __init__(self) -> None:
        self.tallies: dict[str, _Tally] = {}
        self.events = 0
        self.bounds: frozenset[str] = frozenset()
        self._at_bounds: set[str] = set()
        self._lock = threading.Lock()

    def page(self, value: list[Any]) -> None:
        with self._lock:
            bounds, tallies = self.bounds, self.tallies
            for event in value:
                if bounds and isinstance(event, dict):
                    when = event.get("createdDateTime")
                    if isinstance(when, str) and when[:19] in bounds:
                        key = str(event.get("id") or sorted(event.items()))
                        if key in self._at_bounds:
                            continue
                        self._at_bounds.add(key)
                self.events += _fold(event, tallies)


def _fold(event: Any, tallies: dict[str, _Tally]) -> int:
    """Count one sign-in into its user's tally; 0 for an event that says nothing usable."""
    if not isinstance(event, dict):
        return 0
    app = event.get("clientAppUsed")
    protocol = CLIENT_APP_PROTOCOL.get(app) if isinstance(app, str) else None
    if protocol is None and app != OTHER_CLIENTS:
        return 0  # a modern client the filter let through: not Basic auth
    when = event.get("createdDateTime")
    user_id = event.get("userId")
    upn = event.get("userPrincipalName")
    if not isinstance(when, str) or not (isinstance(user_id, str) or isinstance(upn, str)):
        return 0
    status = event.get("status")
    error = status.get("errorCode") if isinstance(status, dict) else None
    key = user_id.lower() if isinstance(user_id, str) and user_id else str(upn).casefold()
    tally = tallies.get(key)
    if tally is None:
        tally = tallies[key] = _Tally(upn if isinstance(upn, str) else "")
    tally.add(protocol or OTHER, when, error == 0)
    return 1


def graph_base(settings: ConnectionSettings) -> str:
    """Where Graph is: the configured endpoint (the emulator) else the cloud's Graph host."""
    return (settings.endpoint or settings.cloud.graph_host).rstrip("/")


def graph_scope(settings: ConnectionSettings) -> str:
    """The token scope for this cloud's Graph."""
    return f"{settings.cloud.graph_host}/.default"
