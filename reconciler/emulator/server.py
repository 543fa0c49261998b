"""The service behind the HTTPS front: authentication, throttling, faults, paging, statistics.

One `EmulatorService` holds the tenant, the three rooms (the Entra token service of
`identity.py`, the Exchange admin API's cmdlets of `cmdlets.py`, Microsoft Graph's sign-in log
of `graph.py`) and the run-time settings; the HTTP plumbing that routes requests to it is in
`http.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from reconciler.emulator import wire
from reconciler.emulator.cmdlets import CmdletEngine, CmdletResult, Selector
from reconciler.emulator.graph import GraphRoom
from reconciler.emulator.http import Headers, Response, json_response
from reconciler.emulator.identity import (
    EXCHANGE_ROLES,
    MANAGE_AS_APP,
    RECIPIENT_WRITE_ROLES,
    WRITE_ROLES,
    IdentityService,
    TokenError,
)
from reconciler.emulator.settings import (
    CLOUD_GRAPH,
    EmulatorSettings,
    apply_runtime_changes,
    audiences_of,
)
from reconciler.emulator.state import TenantState
from reconciler.emulator.synthetic import joiners

log = logging.getLogger("authpolicy.emulator")

MAX_PAGE_SIZE = 1000
MAX_BATCH = 10


class _Reset(Exception):
    """Close the connection with a TCP reset instead of answering."""


@dataclass
class _Cursor:
    items: list[Any]
    render: Any
    end: int  # index after the last object this cursor may return (ResultSize)
    offset: int
    select: Selector | None
    body_hash: str
    truncated: bool
    cmdlet: str
    created: float
    anchor: str = ""  # X-AnchorMailbox of the first page (cursor_affinity=strict checks it)


@dataclass
class Stats:
    """Counters the tests read to prove what the client did."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    token_requests: Counter[int] = field(default_factory=Counter)
    writes_changed_state: int = 0
    writes_noop: int = 0
    writes_dry_run: int = 0
    write_log: list[dict[str, Any]] = field(default_factory=list)
    throttled: int = 0
    concurrency_rejected: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    objects_returned: int = 0
    # Answers to $batch members, by cmdlet (also counted in `requests`): tells pages from
    # per-object reads in a run that does both.
    batch_members: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able snapshot."""
        by_cmdlet: dict[str, dict[str, int]] = {}
        for (cmdlet, status), count in sorted(self.requests.items()):
            by_cmdlet.setdefault(cmdlet, {})[str(status)] = count
        return {
            "requests": by_cmdlet,
            "requests_total": sum(self.requests.values()),
            "token_requests": {str(k): v for k, v in sorted(self.token_requests.items())},
            "writes_changed_state": self.writes_changed_state,
            "writes_noop": self.writes_noop,
            "writes_dry_run": self.writes_dry_run,
            "write_log": [dict(entry) for entry in self.write_log],
            "throttled": self.throttled,
            "concurrency_rejected": self.concurrency_rejected,
            "faults_injected": dict(self.faults_injected),
            "objects_returned": self.objects_returned,
            "batch_members": dict(sorted(self.batch_members.items())),
        }


class EmulatorService:
    """Everything behind the sockets; thread-safe."""

    def __init__(
        self,
        settings: EmulatorSettings,
        state: TenantState,
        identity: IdentityService,
        reload_state: Any,
    ) -> None:
        self.settings = settings
        self.state = state
        self.identity = identity
        self.engine = CmdletEngine(state, lambda: self.settings)
        self.graph = GraphRoom(lambda: self.settings, lambda: self.state)
        self._reload_state = reload_state
        self.endpoint = ""  # set once the port is known: https://127.0.0.1:PORT (the front)
        self.backend_endpoint = ""  # the same socket under settings.backend_host
        self._reference_counter = 0
        self.stats = Stats()
        self._stats_lock = threading.Lock()
        self._cursors: dict[str, _Cursor] = {}
        self._cursor_lock = threading.Lock()
        self._last_cursor_sweep = time.monotonic()
        self._throttle: dict[str, tuple[float, int]] = {}
        self._throttle_lock = threading.Lock()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._fault_lock = threading.Lock()
        self._rng = random.Random(settings.fault_seed)
        self._revoked_at: dict[str, float] = {}

    # ------------------------------------------------------------------ settings
    def set_faults(self, changes: dict[str, Any]) -> None:
        """Change run-time settings (ValueError on unknown names or bad values)."""
        with self._fault_lock:
            updated = apply_runtime_changes(self.settings, changes)
            if "fault_seed" in changes:
                self._rng = random.Random(updated.fault_seed)
            self.settings = updated

    def reset(self, *, state: bool) -> None:
        """Zero the statistics; with state=True also restore the tenant as it was at start."""
        with self._stats_lock:
            self.stats = Stats()
        if state:
            new_state = self._reload_state()
            self.state = new_state
            self.engine.state = new_state
            with self._cursor_lock:
                self._cursors.clear()

    def _roll(self, fault: str) -> bool:
        """Decide whether to inject `fault` now (one-shots first, then the rate)."""
        quick = self.settings
        if not quick.one_shot and not getattr(quick, f"{fault}_rate"):
            return False  # the common case, without the lock
        with self._fault_lock:
            settings = self.settings
            if fault in settings.one_shot:
                settings.one_shot.remove(fault)
                hit = True
            else:
                rate = float(getattr(settings, f"{fault}_rate"))
                hit = rate > 0 and self._rng.random() < rate
        if hit:
            with self._stats_lock:
                self.stats.faults_injected[fault] += 1
        return hit

    def count(self, cmdlet: str, status: int, objects: int = 0, *, member: bool = False) -> None:
        """Record one answered request (`member`: a $batch member's)."""
        with self._stats_lock:
            self.stats.requests[(cmdlet, status)] += 1
            self.stats.objects_returned += objects
            if member:
                self.stats.batch_members[cmdlet] += 1

    # ------------------------------------------------------------------- identity
    def openid_configuration(self, tenant: str) -> Response:
        """The tenant discovery document msal reads."""
        if not self.identity.knows_tenant(tenant):
            err = TokenError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            return _json(400, err.body())
        base = f"{self.endpoint}/{self.identity.tenant_id}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.endpoint}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }
        return _json(200, doc)

    def instance_discovery(self, query: dict[str, list[str]]) -> Response:
        """The answer to msal's instance discovery (when a client does not turn it off)."""
        authorize = (query.get("authorization_endpoint") or [""])[0]
        path = urlsplit(authorize).path.strip("/").split("/")
        tenant = path[0] if path and path[0] else "common"
        host = urlsplit(self.endpoint).netloc
        return _json(
            200,
            {
                "tenant_discovery_endpoint": (
                    f"{self.endpoint}/{tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            },
        )

    def jwks(self) -> Response:
        """The public key that verifies access tokens."""
        from jwt.algorithms import RSAAlgorithm

        jwk = json.loads(RSAAlgorithm.to_jwk(self.identity.pki.signing_key.public_key()))
        jwk.update({"kid": self.identity.pki.signing_kid, "use": "sig"})
        return _json(200, {"keys": [jwk]})

    def token(self, tenant: str, raw_body: bytes) -> Response:
        """POST /{tenant}/oauth2/v2.0/token."""
        form = {k: v[0] for k, v in parse_qs(raw_body.decode("utf-8", "replace")).items()}
        settings = self.settings
        try:
            answer = self.identity.token_request(
                tenant,
                form,
                f"{self.endpoint}/{self.identity.tenant_id}/oauth2/v2.0/token",
                lifetime=settings.token_lifetime_seconds,
                revoked=settings.revoked_apps,
                federated_issuer=settings.federated_issuer,
                federated_audience=settings.federated_audience,
                resources=(*audiences_of(settings), CLOUD_GRAPH[settings.cloud]),
            )
            response = _json(200, answer)
        except TokenError as exc:
            response = _json(exc.status, exc.body())
        response.headers["Cache-Control"] = "no-store, no-cache"
        with self._stats_lock:
            self.stats.token_requests[response.status] += 1
        return response

    def _www_authenticate(self, error: str) -> dict[str, str]:
        value = (
            f'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
            f'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
            f'token_types="app_asserted_user_v1 service_asserted_app_v1", '
            f'authorization_uri="{self.endpoint}/common/oauth2/authorize", '
            f'error="invalid_token", error_description="{error}"'
        )
        return {"WWW-Authenticate": value}

    def _unauthorized(self, reason: str) -> Response:
        # Exchange gives 401 with an empty body; the reason only in WWW-Authenticate.
        return Response(401, b"", self._www_authenticate(reason))

    def _forbidden(self) -> Response:
        if self.settings.forbidden_body == "nul_gzip":
            return Response(
                403,
                b"\x00" * 64,
                {"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        return Response(403, b"")

    def authenticate(
        self, headers: Any, tenant: str
    ) -> tuple[dict[str, Any] | None, Response | None]:
        """Check the bearer token for this tenant; (claims, None) or (None, error response)."""
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, self._unauthorized("Bearer token is missing.")
        settings = self.settings
        claims, reason = self.identity.verify_access_token(token.strip(), audiences_of(settings))
        if claims is None:
            return None, self._unauthorized(reason)
        if not self.identity.knows_tenant(tenant) or claims.get("tid") != self.identity.tenant_id:
            return None, self._unauthorized("The token's tenant does not match the request.")
        app = self.identity.app_by_client_id(str(claims.get("appid", "")))
        if app is not None and app.name in settings.revoked_apps:
            return None, self._unauthorized("The application's credentials were revoked.")
        early = settings.token_early_expiry_seconds
        if early is not None and time.time() - float(claims.get("iat", 0)) >= early:
            return None, self._unauthorized("Lifetime validation failed, the token is expired.")
        if MANAGE_AS_APP not in (claims.get("roles") or []):
            return None, self._unauthorized("The token has no Exchange.ManageAsApp permission.")
        wids = set(claims.get("wids") or [])
        if not wids & EXCHANGE_ROLES:
            body = {
                "error": {
                    "code": "Forbidden",
                    "message": (
                        f"The role assigned to application {claims.get('appid')} isn't supported "
                        "in this scenario. Please check online documentation for assigning "
                        "correct Directory Roles to Azure AD Application for EXO App-Only "
                        "Authentication."
                    ),
                }
            }
            return None, _json(403, body)
        return claims, None

    def _throttle_check(self, claims: dict[str, Any]) -> Response | None:
        settings = self.settings
        budget = settings.throttle_budget
        if budget <= 0:
            return None
        key = str(claims.get("appid"))
        now = time.monotonic()
        window = settings.throttle_window_seconds
        with self._throttle_lock:
            start, used = self._throttle.get(key, (now, 0))
            if now - start >= window:
                start, used = now, 0
            if used >= budget:
                retry = max(0.001, window - (now - start))
                with self._stats_lock:
                    self.stats.throttled += 1
                response = _json(
                    429,
                    {
                        "error": {
                            "code": "TooManyRequests",
                            "message": "Too many requests. Please retry after the time given in "
                            "the Retry-After header.",
                        }
                    },
                )
                response.headers["Retry-After"] = f"{retry:.3f}"
                return response
            self._throttle[key] = (start, used + 1)
        return None

    def _acquire_slot(self) -> bool:
        cap = self.settings.max_concurrent_per_tenant
        with self._inflight_lock:
            if cap > 0 and self._inflight >= cap:
                return False
            self._inflight += 1
            return True

    def _release_slot(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    # ------------------------------------------------------------------- admin API
    def _on_backend(self, host: str | None) -> bool:
        name = (host or "").rsplit(":", 1)[0].strip("[]").lower()
        return name == self.settings.backend_host.lower()

    def _link_base(self, host: str | None, tenant: str) -> str:
        """scheme://host/adminapi/beta/{tenant} of the nextLinks this request hands out."""
        style = self.settings.next_link_style
        if style == "backend_host":
            return f"{self.backend_endpoint}/adminapi/beta/{tenant}"
        origin = f"https://{host}" if host else self.endpoint
        if style == "guid":
            tenant = self.identity.tenant_id
        elif style == "domain":
            tenant = self.state.domain
        return f"{origin}/adminapi/beta/{tenant}"

    def _choose_reference_form(self) -> str:
        form = self.settings.policy_reference_format
        if form != "rotate":
            return form
        with self._stats_lock:
            self._reference_counter += 1
            return ("name", "dn", "guid", "object")[self._reference_counter % 4]

    def admin_request(
        self,
        tenant: str,
        action: str,
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
        path: str = "",
    ) -> Response:
        """POST /adminapi/beta/{tenant}/InvokeCommand | $batch."""
        host = headers.get("Host")
        if self.settings.redirect_to_backend and not self._on_backend(host):
            # round2-facts.md §3: some tenants are sent to a tenant-specific host first.
            self.count("-", 307)
            return Response(307, b"", {"Location": f"{self.backend_endpoint}{path}"})
        self.engine.begin_request(self._choose_reference_form())
        claims, failure = self.authenticate(headers, tenant)
        if failure is not None:
            self.count("-", failure.status)
            return failure
        assert claims is not None
        throttled = self._throttle_check(claims)
        if throttled is not None:
            self.count("-", 429)
            return throttled
        if not self._acquire_slot():
            with self._stats_lock:
                self.stats.concurrency_rejected += 1
            self.count("-", self.settings.concurrency_status)
            return Response(
                self.settings.concurrency_status,
                wire.CONCURRENCY_TEXT.encode("utf-8"),
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        started = time.monotonic()
        try:
            for status, fault in ((503, "error_503"), (504, "error_504")):
                if self._roll(fault):
                    self.count("-", status)
                    return Response(
                        status,
                        b"<html><body>Service Unavailable</body></html>"
                        if status == 503
                        else b"<html><body>Gateway Timeout</body></html>",
                        {"Content-Type": "text/html"},
                    )
            link_base = self._link_base(host, tenant)
            if action == "$batch":
                response, objects = self._batch(tenant, claims, query, headers, body, link_base)
            else:
                response, objects = self._invoke(
                    tenant,
                    claims,
                    query,
                    headers.get("Prefer"),
                    body,
                    transport_faults=True,
                    link_base=link_base,
                    anchor=headers.get("X-AnchorMailbox") or "",
                )
            self._sleep_latency(objects, started)
            return response
        finally:
            self._release_slot()

    def _sleep_latency(self, objects: int, started: float) -> None:
        settings = self.settings
        delay = (settings.latency_base_ms + settings.latency_per_object_ms * objects) / 1000.0
        remaining = delay - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)

    def _batch(
        self,
        tenant: str,
        claims: dict[str, Any],
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
        link_base: str,
    ) -> tuple[Response, int]:
        try:
            doc = json.loads(body or b"null")
            requests = doc["requests"]
            if not isinstance(requests, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.count("$batch", 400)
            return _error_response(_bad_request("The batch request body is not valid.")), 0
        if len(requests) > MAX_BATCH:
            self.count("$batch", 400)
            return _error_response(
                _bad_request(
                    f"The number of requests in the batch ({len(requests)}) exceeds the "
                    f"maximum of {MAX_BATCH}."
                )
            ), 0
        responses = []
        objects = 0
        for item in requests:
            item = item if isinstance(item, dict) else {}
            item_id = str(item.get("id", ""))
            url = urlsplit(str(item.get("url", "")))
            parts = [p for p in url.path.split("/") if p]
            raw_headers = item.get("headers")
            inner_headers = (
                {str(k): str(v) for k, v in raw_headers.items()}
                if isinstance(raw_headers, dict)
                else {}
            )
            lowered = {k.lower(): v for k, v in inner_headers.items()}
            prefer = lowered.get("prefer")
            member_failure = None
            resp_body: Any
            if self.settings.batch_member_auth == "required":
                # round2-facts.md §3: the V3 module and CIPP put a token in every member.
                _, member_failure = self.authenticate(Headers(lowered), tenant)
            if member_failure is not None:
                self.count("-", member_failure.status, member=True)
                status, resp_headers, resp_body = (
                    member_failure.status,
                    dict(member_failure.headers),
                    None,
                )
            elif (
                len(parts) != 4
                or parts[0].lower() != "adminapi"
                or parts[2].lower() != tenant.lower()
                or parts[3].lower() != "invokecommand"
            ):
                status, resp_headers, resp_body = (
                    400,
                    {},
                    _bad_request(
                        "The batch member's url must be this tenant's InvokeCommand."
                    ).body(),
                )
            else:
                raw = item.get("body")
                inner_body = raw.encode("utf-8") if isinstance(raw, str) else wire.dumps(raw)
                throttled = self._throttle_check(claims)
                if throttled is not None:
                    inner, count = throttled, 0
                else:
                    inner, count = self._invoke(
                        tenant,
                        claims,
                        parse_qs(url.query),
                        prefer,
                        inner_body,
                        transport_faults=False,
                        link_base=link_base,
                        anchor=lowered.get("x-anchormailbox", ""),
                    )
                objects += count
                status, resp_headers = inner.status, dict(inner.headers)
                try:
                    resp_body = json.loads(inner.body) if inner.body else None
                except ValueError:
                    resp_body = None
            responses.append(
                {"id": item_id, "status": status, "headers": resp_headers, "body": resp_body}
            )
        self.count("$batch", 200)
        return _json(200, {"responses": responses}), objects

    def _invoke(
        self,
        tenant: str,
        claims: dict[str, Any],
        query: dict[str, list[str]],
        prefer: str | None,
        body: bytes,
        *,
        transport_faults: bool,
        link_base: str,
        anchor: str,
    ) -> tuple[Response, int]:
        """One InvokeCommand: parse, authorise the cmdlet, run or page, wrap.

        `transport_faults` is False exactly for $batch members (resets and malformed answers
        are injected on whole HTTP requests only).
        """
        member = not transport_faults
        try:
            doc = json.loads(body or b"null")
            cmdlet_input = doc["CmdletInput"]
            name = cmdlet_input["CmdletName"]
            parameters = cmdlet_input.get("Parameters") or {}
            if not isinstance(parameters, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            self.count("-", 400, member=member)
            return _error_response(_bad_request("The request body is not a valid CmdletInput.")), 0
        spec = self.engine.lookup(name)
        if spec is None:
            self.count(str(name)[:60], 403, member=member)
            return self._forbidden(), 0
        wids = set(claims.get("wids") or [])
        if spec.write and not (
            wids & WRITE_ROLES or (spec.recipient_write and wids & RECIPIENT_WRITE_ROLES)
        ):
            self.count(spec.name, 403, member=member)
            return self._forbidden(), 0
        body_hash = hashlib.sha256(
            json.dumps(cmdlet_input, sort_keys=True, separators=(",", ":")).encode("utf-8")
        ).hexdigest()
        select_text = (query.get("$select") or [""])[0]
        select = Selector(select_text.split(",")) if select_text else None
        page_size = _page_size(prefer, self.settings.default_page_size)
        skiptokens = query.get("$skiptoken")
        skiptoken = skiptokens[0] if skiptokens else None
        if skiptoken is not None:
            response, objects = self._next_page(
                tenant, skiptoken, body_hash, page_size, spec.name, link_base, anchor
            )
            self.count(spec.name, response.status, objects, member=member)
            return response, objects
        if spec.write and transport_faults and self._roll("reset_before_write"):
            self.count(spec.name, 0, member=member)
            return Response(0, reset=True, cmdlet=spec.name), 0
        try:
            result = self.engine.run(spec, parameters)
        except wire.CmdletError as exc:
            self.count(spec.name, exc.status, member=member)
            return _error_response(exc), 0
        if result.write:
            self._record_write(result)
            if transport_faults and not result.dry_run and self._roll("reset_after_write"):
                self.count(spec.name, 0, member=member)
                return Response(0, reset=True, cmdlet=spec.name), 0
            response = self._write_response(tenant, result)
            objects = len(result.items)
        else:
            response, objects = self._first_page(
                tenant, result, select, page_size, body_hash, spec.name, link_base, anchor
            )
        if transport_faults:
            response = self._maybe_malform(response)
        self.count(spec.name, response.status, objects, member=member)
        return response, objects

    def _record_write(self, result: CmdletResult) -> None:
        with self._stats_lock:
            if result.dry_run:
                self.stats.writes_dry_run += 1
            elif result.changed:
                self.stats.writes_changed_state += 1
                stamp = wire.format_date(_utcnow())
                for entry in result.log:
                    self.stats.write_log.append({**entry, "time": stamp})
            else:
                self.stats.writes_noop += 1

    def _write_response(self, tenant: str, result: CmdletResult) -> Response:
        mode = self.settings.write_response
        extra = {}
        if result.confirmation is not None:
            extra["@adminapi.confirmationmessage"] = result.confirmation
        if result.items and result.render is not None:
            value = [result.render(item, None) for item in result.items]
            return _json(
                200,
                wire.envelope(self.endpoint, tenant, value, warnings=result.warnings, extra=extra),
            )
        if mode == "no_content" and not result.confirmation:
            return Response(204, b"")
        body = wire.envelope(
            self.endpoint,
            tenant,
            None if mode == "null" else [],
            warnings=result.warnings,
            include_value=mode != "absent",
            extra=extra,
        )
        return _json(200, body)

    def _first_page(
        self,
        tenant: str,
        result: CmdletResult,
        select: Selector | None,
        page_size: int,
        body_hash: str,
        cmdlet: str,
        link_base: str,
        anchor: str,
    ) -> tuple[Response, int]:
        items = result.items
        end = len(items) if result.limit is None else min(result.limit, len(items))
        truncated = result.limit is not None and len(items) > result.limit
        cursor = _Cursor(
            items=list(items) if end > page_size else [],
            render=result.render,
            end=end,
            offset=0,
            select=select,
            body_hash=body_hash,
            truncated=truncated,
            cmdlet=cmdlet,
            created=time.monotonic(),
            anchor=anchor,
        )
        if end <= page_size:
            cursor.items = list(items[:end])
        return self._serve_page(tenant, link_base, cursor, page_size, result.warnings)

    def _next_page(
        self,
        tenant: str,
        token: str,
        body_hash: str,
        page_size: int,
        cmdlet: str,
        link_base: str,
        anchor: str,
    ) -> tuple[Response, int]:
        now = time.monotonic()
        expiry = self.settings.cursor_expiry_seconds
        strict = self.settings.cursor_affinity == "strict"
        with self._cursor_lock:
            # strict: a cursor works once (graph2otel saw replays fail at once), and only with
            # the routing header of the read it belongs to.
            cursor = self._cursors.pop(token, None) if strict else self._cursors.get(token)
        if (
            cursor is None
            or now - cursor.created > expiry
            or cursor.body_hash != body_hash
            or cursor.cmdlet != cmdlet
            or (strict and cursor.anchor.lower() != anchor.lower())
        ):
            return _error_response(wire.pagination_expired()), 0
        return self._serve_page(tenant, link_base, cursor, page_size, [])

    def _serve_page(
        self, tenant: str, link_base: str, cursor: _Cursor, page_size: int, warnings: list[str]
    ) -> tuple[Response, int]:
        stop = min(cursor.offset + page_size, cursor.end)
        render = cursor.render
        select = cursor.select
        value = [render(item, select) for item in cursor.items[cursor.offset : stop]]
        warnings = list(warnings)
        next_link = None
        if stop < cursor.end:
            token = secrets.token_urlsafe(18)
            follow = _Cursor(**{**cursor.__dict__, "offset": stop, "created": time.monotonic()})
            with self._cursor_lock:
                self._sweep_cursors()
                self._cursors[token] = follow
            select_part = (
                "$select=" + quote(",".join(select.names), safe=",") + "&" if select else ""
            )
            next_link = f"{link_base}/InvokeCommand?{select_part}$skiptoken={token}"
        if next_link is not None or cursor.truncated:
            warnings.append(wire.MORE_RESULTS_WARNING)
        body = wire.envelope(self.endpoint, tenant, value, warnings=warnings, next_link=next_link)
        return _json(200, body), len(value)

    def _sweep_cursors(self) -> None:
        now = time.monotonic()
        if now - self._last_cursor_sweep < 60:
            return
        self._last_cursor_sweep = now
        expiry = self.settings.cursor_expiry_seconds
        for key in [k for k, c in self._cursors.items() if now - c.created > expiry]:
            del self._cursors[key]

    def _maybe_malform(self, response: Response) -> Response:
        if response.status != 200:
            return response
        if self._roll("nul_gzip_403"):
            return Response(
                403, b"\x00" * 64, {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )
        if self._roll("non_json"):
            return Response(
                200,
                b"<html><head><title>Object moved</title></head><body>Object moved</body></html>",
                {"Content-Type": "text/html"},
            )
        if self._roll("missing_value"):
            doc = json.loads(response.body)
            doc.pop("value", None)
            return _json(200, doc)
        if self._roll("truncated_json"):
            return Response(
                200, response.body[: max(1, len(response.body) // 2)], dict(response.headers)
            )
        if b"@odata.nextLink" in response.body and self._roll("foreign_next_link"):
            doc = json.loads(response.body)
            link = urlsplit(doc["@odata.nextLink"])
            doc["@odata.nextLink"] = link._replace(netloc="attacker.example:443").geturl()
            return _json(200, doc)
        return response

    # ------------------------------------------------------------------- control API
    def control(self, method: str, action: str, body: bytes) -> Response:
        """/_emulator/{stats,state,reset,faults} (only when control_api is on)."""
        if method == "GET" and action == "stats":
            return _json(200, self.stats_dict())
        if method == "GET" and action == "state":
            return _json(200, self.state.to_dict())
        if method == "GET" and action == "faults":
            return _json(200, _settings_view(self.settings))
        if method == "POST" and action == "users":
            try:
                doc = json.loads(body or b"{}")
                if not isinstance(doc, dict) or set(doc) - {"add", "remove"}:
                    raise ValueError('the body must be {"add": N} and/or {"remove": [UPN, ...]}')
                return _json(200, self.joiners_and_leavers(doc))
            except (ValueError, TypeError) as exc:
                return _json(400, {"error": str(exc)})
        if method == "POST" and action in ("reset", "faults"):
            try:
                doc = json.loads(body or b"{}")
                if not isinstance(doc, dict):
                    raise ValueError("the body must be a JSON object")
                if action == "reset":
                    self.reset(state=bool(doc.get("state", False)))
                else:
                    self.set_faults(doc)
            except (ValueError, TypeError) as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, _settings_view(self.settings))
        return _json(404, {"error": "unknown control endpoint"})

    def graph_sign_ins(self, headers: Any, query: dict[str, list[str]]) -> Response:
        """GET /v1.0/auditLogs/signIns: the token is checked for this cloud's Graph audience
        and tenant here; the Graph room (graph.py) does the rest."""
        claims, reason, base = self._graph_caller(headers)
        status, body, extra = self.graph.sign_ins(claims, reason, query, base)
        objects = len(body.get("value", [])) if body else 0
        self.count("graph:signIns", status, objects)
        response = _json(status, body)
        response.headers.update(extra)
        return response

    def graph_conditional_access(self, headers: Any) -> Response:
        """GET /v1.0/identity/conditionalAccess/policies (Policy.Read.All)."""
        claims, reason, base = self._graph_caller(headers)
        status, body, extra = self.graph.conditional_access(claims, reason, base)
        self.count("graph:conditionalAccess", status, len(body.get("value", [])) if body else 0)
        response = _json(status, body)
        response.headers.update(extra)
        return response

    def _graph_caller(self, headers: Any) -> tuple[dict[str, Any] | None, str, str]:
        """The verified claims of a Graph request's token (None and why), and the base URL."""
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        graph = CLOUD_GRAPH[self.settings.cloud]
        claims, reason = (
            self.identity.verify_access_token(token.strip(), (graph,))
            if scheme.lower() == "bearer" and token.strip()
            else (None, "Access token is empty.")
        )
        if claims is not None and claims.get("tid") != self.identity.tenant_id:
            claims, reason = None, "Invalid tenant."
        host = headers.get("Host")
        base = f"https://{host}" if host else self.endpoint
        return claims, reason, base

    def joiners_and_leavers(self, doc: dict[str, Any]) -> dict[str, list[str]]:
        """{"add": N} creates N user mailboxes without a direct policy (as Exchange creates
        them); {"remove": [UPN, ...]} deletes users, as Entra does. Answers the UPNs."""
        add = doc.get("add", 0)
        remove = doc.get("remove", [])
        if not isinstance(add, int) or isinstance(add, bool) or not 0 <= add <= 100_000:
            raise ValueError("add must be a whole number from 0 to 100000")
        if not isinstance(remove, list) or not all(isinstance(u, str) for u in remove):
            raise ValueError("remove must be a list of UPNs")
        state = self.state
        with state.lock:
            missing = [u for u in remove if state.find_user(u, allow_external_id=True) is None]
            if missing:
                raise ValueError(f"no such user: {', '.join(missing[:5])}")
            removed = []
            for upn in remove:
                gone = state.remove_user(upn)
                if gone is not None:
                    removed.append(gone["UserPrincipalName"])
            taken = {u["Name"].lower() for u in state.users}
            rng = random.Random(len(taken))
            added = joiners(
                rng,
                add,
                taken,
                tenant_domain=state.domain,
                user_domain=self.settings.user_domain,
            )
            for user in added:
                state.add_user(user)
        return {"added": [u["UserPrincipalName"] for u in added], "removed": removed}

    def stats_dict(self) -> dict[str, Any]:
        """Snapshot of the statistics."""
        with self._stats_lock:
            return self.stats.as_dict()


def _settings_view(settings: EmulatorSettings) -> dict[str, Any]:
    out = {}
    for key, value in settings.__dict__.items():
        out[key] = str(value) if key in ("state_dir", "state_file") and value else value
    return out


def _utcnow() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def _page_size(prefer: str | None, default: int) -> int:
    if prefer:
        for part in prefer.replace(";", ",").split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "odata.maxpagesize":
                try:
                    size = int(value.strip())
                except ValueError:
                    continue
                if size >= 1:
                    return min(size, MAX_PAGE_SIZE)
    return default


def _bad_request(text: str) -> wire.CmdletError:
    return wire.CmdletError(
        400, "BadRequest", "Invalid Operation", "System.ArgumentException", text, with_details=False
    )


_json = json_response


def _error_response(exc: wire.CmdletError) -> Response:
    response = _json(exc.status, exc.body())
    response.headers.update(exc.headers())
    return response
