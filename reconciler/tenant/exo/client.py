"""The InvokeCommand client: one cmdlet per request, paging, retries and $batch.

`AdminApiClient` is the only code that speaks HTTP to the admin API
(`POST {base}/InvokeCommand`, `POST {base}/$batch`; exo-adminapi.md). It is thread-safe: the
session pools connections across threads and the token provider locks its cache.

Retry contract (exo-adminapi.md §7):
- 429 waits `Retry-After` (decimal seconds); 503, 504, 5xx, connection failures, unreadable
  answers and Exchange's transient exception names back off exponentially with jitter; every
  logical call has an overall deadline (`RetryPolicy`).
- 401 once: the token is dropped, a new one fetched and the request sent again; a second 401
  is a permission problem.
- A WRITE is never sent again after an ambiguous failure (a reset or timeout after the request
  may have reached Exchange): `ExoConnectionError(maybe_sent=True)` goes to the caller, which
  re-reads whether the change took effect first (see `exo.tenant`).

Observing throttling: `stats` counts requests, 429s and retries; `on_throttle(retry_after)` is
called for every throttled answer, from the thread that got it; every wait before a retry runs
inside `backing_off()`, from the thread that waits (a read pace frees the waiting page's slot).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from reconciler.errors import ConnectionSettingsError
from reconciler.tenant.exo.auth import TokenProvider
from reconciler.tenant.exo.errors import (
    ExoConnectionError,
    ExoError,
    ExoPaginationExpiredError,
    ExoPermissionError,
    ExoProtocolError,
    ExoThrottledError,
    ExoTransientError,
    classify_error,
)
from reconciler.tenant.exo.retry import Attempts, RetryPolicy, parse_retry_after
from reconciler.tenant.exo.settings import ConnectionSettings, on_trusted_origin, origin_of
from reconciler.tenant.exo.transport import root_cause_name

log = logging.getLogger(__name__)

# exo-adminapi.md §3: the app-only routing hint. Sent on every request (and so on every page).
SYSTEM_MAILBOX = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"
MAX_PAGE_SIZE = 1000
MAX_BATCH = 10
MAX_REDIRECTS = 3
MORE_RESULTS_WARNING = "There are more results available than are currently displayed"
WRITE_VERBS = ("set-", "new-", "remove-", "add-", "enable-", "disable-", "update-")


def is_write_cmdlet(cmdlet: str) -> bool:
    return cmdlet.lower().startswith(WRITE_VERBS)


def cmdlet_body(cmdlet: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The InvokeCommand body (exo-adminapi.md §4); `Parameters` is `{}` rather than absent."""
    return {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters)}}


@dataclass
class ClientStats:
    """Counters for benchmarks and for the executor to see throttling. Thread-safe."""

    requests: int = 0  # HTTP requests sent to the admin API (each try and each page counts)
    pages: int = 0
    batches: int = 0
    throttled: int = 0  # 429 / concurrency answers
    retries: int = 0  # requests sent again after a failure
    token_refreshes: int = 0  # 401 -> new token
    redirects: int = 0  # 3xx answers followed (once per run when the redirect is cached)
    read_restarts: int = 0  # reads started again because Exchange refused a cursor
    partitions: int = 0  # Get-User partitions read side by side (--read-concurrency)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                k: getattr(self, k)
                for k in (
                    "requests",
                    "pages",
                    "batches",
                    "throttled",
                    "retries",
                    "token_refreshes",
                    "redirects",
                    "read_restarts",
                )
            }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cmdlet's output."""

    value: list[dict[str, Any]]
    warnings: list[str]
    next_link: str | None


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One member of a $batch: a cmdlet call."""

    cmdlet: str
    parameters: Mapping[str, Any]
    select: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What became of one member: `value` on success, `error` on failure."""

    item: BatchItem
    value: list[dict[str, Any]] | None = None
    error: ExoError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]
    body_broken: bool = False  # the body could not be read (reset mid-body, bad gzip)


class ExoAuthError(ExoPermissionError):
    """A $batch member refused its token (401): it ran nothing and is sent again alone."""


class AdminApiClient:
    """Calls cmdlets through InvokeCommand. See the module docstring for the retry contract."""

    def __init__(
        self,
        settings: ConnectionSettings,
        tokens: TokenProvider,
        session: requests.Session,
        *,
        retry: RetryPolicy | None = None,
        page_size: int = MAX_PAGE_SIZE,
        timeout: tuple[float, float] = (15.0, 960.0),
        on_throttle: Callable[[float | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.session = session
        self.retry = retry or RetryPolicy()
        self.page_size = max(1, min(MAX_PAGE_SIZE, page_size))
        self.timeout = timeout
        self.on_throttle = on_throttle
        self.backing_off: Callable[[], AbstractContextManager[None]] = nullcontext
        self.stats = ClientStats()
        self._trusted = settings.trusted_origins
        self._tenant_segments = {settings.tenant.lower()}
        self._segments_lock = threading.Lock()
        self._asked_initial_domain = False
        self._rebase(settings.adminapi_base)
        self._connection_id = str(uuid.uuid4())
        self.anchor = f"APP:{SYSTEM_MAILBOX}@{settings.tenant}"
        self.max_read_restarts = 3

    def _rebase(self, base: str) -> None:
        """Send every later call to `base` (`{origin}/adminapi/beta/{tenant}`)."""
        self.base = base
        self.invoke_url = f"{base}/InvokeCommand"
        self.batch_url = f"{base}/$batch"
        self._origin = origin_of(base)

    def add_tenant_alias(self, alias: str) -> None:
        """Another name of this tenant (GUID or initial domain) a nextLink may carry."""
        if alias:
            with self._segments_lock:
                self._tenant_segments.add(alias.lower())

    def _known_segment(self, segment: str) -> bool:
        segment = segment.lower()
        if segment in self._tenant_segments:
            return True
        try:  # the token's tid is the tenant GUID, whichever form AZURE_TENANT_ID has
            tid = str(self.tokens.claims().get("tid") or "")
        except Exception:  # no token yet, or unreadable: the segment stays unknown
            tid = ""
        self.add_tenant_alias(tid)
        if segment not in self._tenant_segments and not self._asked_initial_domain:
            # The initial domain is the organization's name: ask once (one page, no nextLink).
            self._asked_initial_domain = True
            rows = self.invoke("Get-OrganizationConfig", {}, select=["Name"])
            self.add_tenant_alias(str(rows[0].get("Name") or "") if rows else "")
        return segment in self._tenant_segments

    # ------------------------------------------------------------------ headers and bodies

    def _headers(self, cmdlet: str, request_id: str, *, paged: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Charset": "UTF-8",
            "X-CmdletName": cmdlet,
            "X-AnchorMailbox": self.anchor,
            "client-request-id": request_id,
            "connection-id": self._connection_id,
            "X-ClientApplication": "authpolicy",
        }
        if paged:
            headers["Prefer"] = f"odata.maxpagesize={self.page_size}"
        return headers

    def _url_with_select(self, url: str, select: Sequence[str] | None) -> str:
        if not select:
            return url
        return f"{url}?$select={','.join(select)}"

    def check_next_link(self, link: str) -> str:
        """`link` if it names this tenant's admin API on a trusted host (see `_check_target`)."""
        return self._check_target(link, "follow @odata.nextLink")

    def _check_target(self, link: str, what: str) -> str:
        """`link` when it is https on a trusted origin (the configured admin API, the cloud's
        Exchange hosts, AUTHPOLICY_TRUSTED_HOSTS) with path /adminapi/beta/{this tenant's GUID
        or initial domain}/...; a token is never sent anywhere else."""
        parts = urlsplit(link)
        where = f"{parts.scheme}://{parts.netloc}" if parts.netloc else repr(link[:80])
        if not on_trusted_origin(link, self._trusted):
            raise ExoProtocolError(
                f"refusing to {what} to {where}: that host is not one this cloud's Exchange "
                "service uses (nor in AUTHPOLICY_TRUSTED_HOSTS); the token is never sent elsewhere"
            )
        segments = [p for p in parts.path.split("/") if p]
        if (
            len(segments) < 4
            or [p.lower() for p in segments[:2]] != ["adminapi", "beta"]
            or not self._known_segment(segments[2])
        ):
            raise ExoProtocolError(
                f"refusing to {what} to {where}{parts.path[:80]}: it is not this tenant's admin "
                f"API (expected /adminapi/beta/<tenant GUID or initial domain>/...)"
            )
        return link

    def _follow_redirect(self, url: str, answer: _Answer, cmdlet: str) -> str:
        """The URL a 3xx answer sends `url` to; the new origin is kept for every later call."""
        location = answer.headers.get("Location") or ""
        if not location:
            raise ExoProtocolError(f"{cmdlet}: Exchange answered {answer.status} without Location")
        target = self._check_target(urljoin(url, location), f"follow a {answer.status} redirect")
        parts = urlsplit(target)
        segments = [p for p in parts.path.split("/") if p]
        self._rebase(f"{parts.scheme}://{parts.netloc}/{'/'.join(segments[:3])}")
        log.info("%s: Exchange redirects this tenant to %s", cmdlet, self._origin)
        self.stats.add(redirects=1)
        return target

    # ------------------------------------------------------------------ one HTTP exchange

    def _send_once(self, url: str, body: bytes, headers: dict[str, str], token: str) -> _Answer:
        """POST once. Raises ExoConnectionError when no status line came back."""
        self.stats.add(requests=1)
        try:
            response = self.session.post(
                url,
                data=body,
                headers={**headers, "Authorization": f"Bearer {token}"},
                timeout=self.timeout,
                stream=True,
                allow_redirects=False,  # a redirect would carry the token to another place
            )
        except requests.exceptions.SSLError:
            raise ConnectionSettingsError(
                f"TLS verification of {self._origin} failed: its certificate is not trusted; set "
                "AUTHPOLICY_CA_BUNDLE to the CA that signed it (verification cannot be turned off)"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise ExoConnectionError(
                f"cannot connect to {self._origin} (timeout)", maybe_sent=False
            ) from None
        except requests.exceptions.ConnectionError as exc:
            sent = not _never_connected(exc)
            raise ExoConnectionError(
                f"connection to {self._origin} failed"
                + (" after the request was sent" if sent else "")
                + f" ({root_cause_name(exc)})",
                maybe_sent=sent,
            ) from None
        except requests.exceptions.Timeout:
            raise ExoConnectionError(
                f"no answer from {self._origin} within {self.timeout[1]:g}s", maybe_sent=True
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ExoConnectionError(
                f"request to {self._origin} failed ({type(exc).__name__})", maybe_sent=True
            ) from None
        try:
            content = response.content
            broken = False
        except (
            requests.exceptions.ContentDecodingError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            urllib3.exceptions.HTTPError,
        ):
            content, broken = b"", True
        finally:
            response.close()
        return _Answer(response.status_code, content, response.headers, broken)

    def _call(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        cmdlet: str,
        is_write: bool,
        attempts: Attempts | None = None,
    ) -> _Answer:
        """One logical call with retries; returns a 2xx answer or raises a typed ExoError."""
        attempts = attempts or Attempts(self.retry)
        refreshed = False
        redirects = 0
        while True:
            attempts.start()
            token = self.tokens.get()
            try:
                answer = self._send_once(url, body, headers, token)
            except ExoConnectionError as exc:
                exc.cmdlet = cmdlet
                if is_write and exc.maybe_sent:
                    raise  # the caller checks whether it took effect before any resend
                delay = attempts.may_retry_failure()
                if delay is None:
                    raise
                log.debug("%s: %s; retrying in %.2fs", cmdlet, exc, delay)
                self.stats.add(retries=1)
                self._wait(attempts, delay)
                continue
            log.debug("%s -> %d (%d bytes)", cmdlet, answer.status, len(answer.body))
            if 200 <= answer.status < 300:
                return answer
            if answer.status in (301, 302, 303, 307, 308):
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise ExoProtocolError(
                        f"{cmdlet}: Exchange redirected {redirects} times in a row; giving up"
                    )
                # 307/308 keep the method and the body; nothing ran, so a write may go again.
                url = self._follow_redirect(url, answer, cmdlet)
                continue
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            error = classify_error(
                answer.status,
                answer.body,
                cmdlet=cmdlet,
                is_write=is_write,
                exception_type_header=answer.headers.get("x-ExceptionType", ""),
                retry_after=retry_after,
            )
            if answer.status == 401 and not refreshed:
                refreshed = True  # one refresh and one retry (exo-adminapi.md §2)
                self.tokens.invalidate(
                    token, claims_challenge(answer.headers.get("WWW-Authenticate", ""))
                )
                self.stats.add(token_refreshes=1, retries=1)
                continue
            if answer.status == 401:
                raise self._explain_401(error, answer.headers.get("WWW-Authenticate", ""))
            if isinstance(error, ExoThrottledError):
                self.stats.add(throttled=1)
                if self.on_throttle is not None:
                    self.on_throttle(retry_after)
                delay = attempts.may_retry_throttled(retry_after)
                if delay is None:
                    raise error
                log.debug("%s throttled; waiting %.2fs", cmdlet, delay)
                self.stats.add(retries=1)
                self._wait(attempts, delay)
                continue
            if isinstance(error, ExoTransientError):
                if is_write and answer.status in (500, 502, 504):
                    # A gateway timeout or server error may hide a write that went through:
                    # ambiguous (503 and 429 are refusals before any work, safe to resend).
                    raise ExoConnectionError(
                        f"{cmdlet}: Exchange answered {answer.status}; the change may have been "
                        "made or not",
                        maybe_sent=True,
                        status=answer.status,
                        cmdlet=cmdlet,
                    )
                delay = attempts.may_retry_failure()
                if delay is None:
                    raise error
                log.debug("%s: %s; retrying in %.2fs", cmdlet, error, delay)
                self.stats.add(retries=1)
                self._wait(attempts, delay)
                continue
            raise error

    def _explain_401(self, error: ExoError, www_authenticate: str = "") -> ExoPermissionError:
        """Tell a wrong-cloud token, an expired one and a missing role apart (each its fix)."""
        claims: Mapping[str, Any] = {}
        try:
            claims = self.tokens.claims()
        except Exception:  # the message must come out even if the token cannot be read again
            claims = {}
        said = _WWW_DESCRIPTION.search(www_authenticate or "")
        reason = said.group(1) if said else ""
        expected = self.settings.token_resource
        audience = str(claims.get("aud") or "").rstrip("/")
        if audience and audience.lower() != expected.lower():
            return ExoPermissionError(
                f"Exchange refused the token (401): it was issued for {audience}, not {expected}; "
                f"the token is for another cloud's Exchange: check AUTHPOLICY_CLOUD "
                f"(now {self.settings.cloud.name}) and --scope",
                status=401,
                cmdlet=error.cmdlet,
            )
        if "expired" in reason.lower() or "lifetime" in reason.lower():
            return ExoPermissionError(
                "Exchange refused the token as expired (401) although a new one was just "
                "fetched; check this machine's clock (tokens are valid for about an hour) and "
                "that the app's credentials were not revoked",
                status=401,
                cmdlet=error.cmdlet,
            )
        roles = claims.get("roles") or []
        if claims and isinstance(roles, list) and "Exchange.ManageAsApp" not in roles:
            return ExoPermissionError(
                "Exchange refused the token (401): it carries no Exchange.ManageAsApp role; grant "
                "the application permission Exchange.ManageAsApp (Office 365 Exchange Online) to "
                "the app and give admin consent",
                status=401,
                cmdlet=error.cmdlet,
            )
        return ExoPermissionError(str(error), status=401, cmdlet=error.cmdlet)

    # ------------------------------------------------------------------ answers

    def _page_of(self, answer: _Answer, cmdlet: str, *, is_write: bool) -> Page:
        """Parse a 2xx answer. Writes accept empty/absent/null value and 204 (§5)."""
        if answer.status == 204 or (is_write and (answer.body_broken or not answer.body.strip())):
            return Page([], [], None)
        if answer.body_broken:
            raise ExoTransientError(f"{cmdlet}: the answer was cut off", status=answer.status)
        try:
            doc = json.loads(answer.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            if is_write:  # 2xx means it was done; the body does not matter
                return Page([], [], None)
            raise ExoTransientError(
                f"{cmdlet}: the answer is not JSON ({len(answer.body)} bytes)",
                status=answer.status,
            ) from None
        if not isinstance(doc, dict):
            if is_write:
                return Page([], [], None)
            raise ExoTransientError(f"{cmdlet}: unexpected answer shape", status=answer.status)
        value = doc.get("value")
        if value is None and not is_write:
            # A read without "value" is malformed: treating it as empty would lose objects.
            raise ExoTransientError(f"{cmdlet}: the answer has no value", status=answer.status)
        if value is None:
            value = []
        if not isinstance(value, list):
            value = [value] if isinstance(value, dict) else []
        warnings = [str(w) for w in (doc.get("@adminapi.warnings") or []) if w]
        next_link = doc.get("@odata.nextLink")
        return Page(value, warnings, str(next_link) if next_link else None)

    # ------------------------------------------------------------------ public calls

    def invoke(
        self,
        cmdlet: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        select: Sequence[str] | None = None,
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Run one cmdlet and return its objects (every page of a read).

        A read whose cursor Exchange refuses (expired, or one that does not replay) starts again
        from the first page, up to `max_read_restarts` times; never a partial result. Objects
        that come twice (same Guid or ExternalDirectoryObjectId) are kept once: no sort order
        is documented, so nothing may rely on one.
        """
        if is_write_cmdlet(cmdlet):
            return self.invoke_write(cmdlet, parameters or {}, request_id=request_id)
        for restart in range(self.max_read_restarts + 1):
            out: list[dict[str, Any]] = []
            try:
                for page in self.iter_pages(
                    cmdlet, parameters or {}, select=select, request_id=request_id
                ):
                    out.extend(page)
            except ExoPaginationExpiredError:
                if restart >= self.max_read_restarts:
                    raise
                self.stats.add(read_restarts=1)
                log.warning("%s: Exchange refused the next page; reading again", cmdlet)
                continue
            return unique_rows(out)
        raise AssertionError("unreachable")  # pragma: no cover

    def invoke_write(
        self,
        cmdlet: str,
        parameters: Mapping[str, Any],
        *,
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Run a Set-/New-/Remove- cmdlet once (see the module docstring on ambiguity)."""
        request_id = request_id or str(uuid.uuid4())
        body = json.dumps(cmdlet_body(cmdlet, parameters), separators=(",", ":")).encode()
        answer = self._call(
            self.invoke_url,
            body,
            self._headers(cmdlet, request_id, paged=False),
            cmdlet=cmdlet,
            is_write=True,
        )
        return self._page_of(answer, cmdlet, is_write=True).value

    def iter_pages(
        self,
        cmdlet: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        request_id: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield a read cmdlet's pages, following `@odata.nextLink` with the same body.

        The client-request-id and the anchor stay the same on every page and retry; each page
        has its own retry budget. Raises (never stops early) when a page cannot be read.
        """
        for page in self.pages(cmdlet, parameters, select=select, request_id=request_id):
            yield page.value

    def pages(
        self,
        cmdlet: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        request_id: str | None = None,
    ) -> Iterator[Page]:
        """`iter_pages`, each page whole: its `next_link` (checked) says whether more follow,
        so a caller may stop after a page (a partitioned read that splits a large partition)."""
        request_id = request_id or str(uuid.uuid4())
        body = json.dumps(cmdlet_body(cmdlet, parameters), separators=(",", ":")).encode()
        headers = self._headers(cmdlet, request_id, paged=True)
        url: str | None = self._url_with_select(self.invoke_url, select)
        seen_links: set[str] = set()
        while url is not None:
            page = self._read_page(url, body, headers, cmdlet)
            self.stats.add(pages=1)
            for warning in page.warnings:
                if MORE_RESULTS_WARNING not in warning:
                    log.info("%s: Exchange warns: %s", cmdlet, warning)
            if page.next_link is not None:
                link = self.check_next_link(page.next_link)
                if link in seen_links:  # a server bug would otherwise loop forever
                    raise ExoProtocolError(f"{cmdlet}: Exchange returned the same nextLink twice")
                seen_links.add(link)
                url = link
                page = replace(page, next_link=link)
            else:
                url = None
            yield page

    def _wait(self, attempts: Attempts, delay: float) -> None:
        with self.backing_off():
            attempts.wait(delay)

    def _read_page(self, url: str, body: bytes, headers: dict[str, str], cmdlet: str) -> Page:
        attempts = Attempts(self.retry)
        while True:
            answer = self._call(
                url, body, headers, cmdlet=cmdlet, is_write=False, attempts=attempts
            )
            try:
                return self._page_of(answer, cmdlet, is_write=False)
            except ExoTransientError:
                # A malformed 200 (cut off, not JSON, no value): read the page again.
                delay = attempts.may_retry_failure()
                if delay is None:
                    raise
                self.stats.add(retries=1)
                self._wait(attempts, delay)

    # ------------------------------------------------------------------ $batch

    def batch(self, items: Sequence[BatchItem]) -> list[BatchOutcome]:
        """Send up to 10 cmdlet calls in one `$batch` (exo-adminapi.md §8); one outcome each.

        Members fail or succeed on their own; their errors are classified like single calls.
        The batch request itself is retried on 429 and 503 (nothing ran). When its outcome is
        ambiguous (reset or timeout after sending, 504), every member that writes gets an
        `ExoConnectionError(maybe_sent=True)` outcome, for the caller to verify.
        """
        if not items:
            return []
        if len(items) > MAX_BATCH:
            raise ValueError(f"a $batch holds at most {MAX_BATCH} requests")
        request_id = str(uuid.uuid4())
        requests_json = []
        # round2-facts.md §3: the V3 module and CIPP put the token in every member.
        member_token = self.tokens.get()
        for index, item in enumerate(items):
            member_headers = {
                "Authorization": f"Bearer {member_token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-CmdletName": item.cmdlet,
                "X-AnchorMailbox": self.anchor,
                "client-request-id": request_id,
                "Prefer": f"odata.maxpagesize={self.page_size};odata.continue-on-error",
            }
            requests_json.append(
                {
                    "id": str(index),
                    "method": "POST",
                    "url": self._url_with_select(self.invoke_url, item.select),
                    "headers": member_headers,
                    "body": cmdlet_body(item.cmdlet, item.parameters),
                }
            )
        body = json.dumps({"requests": requests_json}, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-AnchorMailbox": self.anchor,
            "client-request-id": request_id,
            "connection-id": self._connection_id,
            "Prefer": "odata.continue-on-error",
            "X-ClientApplication": "authpolicy",
        }
        any_write = any(is_write_cmdlet(i.cmdlet) for i in items)
        self.stats.add(batches=1)
        try:
            answer = self._call(self.batch_url, body, headers, cmdlet="$batch", is_write=any_write)
        except ExoConnectionError as exc:
            if not exc.maybe_sent:
                raise
            return [BatchOutcome(item, error=_ambiguous(item, exc)) for item in items]
        if answer.body_broken:
            return [
                BatchOutcome(
                    item,
                    error=_ambiguous(
                        item, ExoConnectionError("$batch answer cut off", maybe_sent=True)
                    ),
                )
                for item in items
            ]
        outcomes = self._batch_outcomes(items, answer)
        if any(isinstance(o.error, ExoAuthError) for o in outcomes):
            # A member refused its token (401) ran nothing: a new token, and that member alone.
            self.tokens.invalidate(member_token, None)
            self.stats.add(token_refreshes=1)
            outcomes = [
                self._send_alone(o.item) if isinstance(o.error, ExoAuthError) else o
                for o in outcomes
            ]
        return outcomes

    def _send_alone(self, item: BatchItem) -> BatchOutcome:
        """One former $batch member as a call of its own, its failure as an outcome."""
        self.stats.add(retries=1)
        try:
            if is_write_cmdlet(item.cmdlet):
                return BatchOutcome(item, value=self.invoke_write(item.cmdlet, item.parameters))
            return BatchOutcome(
                item, value=self.invoke(item.cmdlet, item.parameters, select=item.select)
            )
        except ExoError as exc:
            return BatchOutcome(item, error=exc)

    def _batch_outcomes(self, items: Sequence[BatchItem], answer: _Answer) -> list[BatchOutcome]:
        try:
            doc = json.loads(answer.body)
            responses = doc["responses"]
            assert isinstance(responses, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            cut = ExoConnectionError("$batch answer is not readable", maybe_sent=True)
            return [BatchOutcome(item, error=_ambiguous(item, cut)) for item in items]
        by_id = {str(r.get("id")): r for r in responses if isinstance(r, dict)}
        outcomes: list[BatchOutcome] = []
        for index, item in enumerate(items):
            member = by_id.get(str(index))
            write = is_write_cmdlet(item.cmdlet)
            if member is None:
                missing = ExoConnectionError(
                    f"$batch gave no answer for {item.cmdlet}", maybe_sent=True
                )
                outcomes.append(BatchOutcome(item, error=_ambiguous(item, missing)))
                continue
            status = int(member.get("status") or 0)
            member_headers = {str(k): str(v) for k, v in (member.get("headers") or {}).items()}
            member_body = member.get("body")
            raw = (
                json.dumps(member_body).encode()
                if isinstance(member_body, dict | list)
                else (str(member_body).encode() if member_body is not None else b"")
            )
            if 200 <= status < 300:
                page = self._page_of(
                    _Answer(status, raw, member_headers), item.cmdlet, is_write=write
                )
                outcomes.append(BatchOutcome(item, value=page.value))
                continue
            retry_after = parse_retry_after(
                member_headers.get("Retry-After") or member_headers.get("retry-after")
            )
            error = classify_error(
                status,
                raw,
                cmdlet=item.cmdlet,
                is_write=write,
                exception_type_header=member_headers.get("x-ExceptionType", ""),
                retry_after=retry_after,
            )
            if isinstance(error, ExoThrottledError):
                self.stats.add(throttled=1)
                if self.on_throttle is not None:
                    self.on_throttle(retry_after)
            if status == 401:
                error = ExoAuthError(str(error), status=401, cmdlet=item.cmdlet)
            outcomes.append(BatchOutcome(item, error=error))
        return outcomes


def row_key(row: Mapping[str, Any]) -> str | None:
    """What identifies a returned object: its Guid, else its ExternalDirectoryObjectId."""
    value = row.get("Guid") or row.get("ExternalDirectoryObjectId")
    return str(value).lower() if value else None


def unique_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` without repeats of the same object (first one kept, order kept)."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for row in rows:
        key = row_key(row)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(row)
    return out


_CLAIMS = re.compile(r'claims="([^"]+)"')
_WWW_DESCRIPTION = re.compile(r'error_description="([^"]*)"')


def claims_challenge(www_authenticate: str) -> str | None:
    """The `claims` of a 401's WWW-Authenticate (base64 or JSON), for msal to ask for them."""
    match = _CLAIMS.search(www_authenticate or "")
    if not match:
        return None
    value = match.group(1)
    if value.lstrip().startswith("{"):
        return value
    try:
        padded = value + "=" * (-len(value) % 4)
        return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_")).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _ambiguous(item: BatchItem, exc: ExoConnectionError) -> ExoError:
    if is_write_cmdlet(item.cmdlet):
        return ExoConnectionError(str(exc), maybe_sent=True, cmdlet=item.cmdlet)
    return ExoTransientError(str(exc), cmdlet=item.cmdlet)


def _never_connected(exc: BaseException) -> bool:
    """True when the failure happened before a connection existed (nothing was sent)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.ConnectTimeoutError
            | urllib3.exceptions.NameResolutionError
            | ConnectionRefusedError,
        ):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            current = current.reason
            continue
        nxt = current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        current = nxt
    return False
