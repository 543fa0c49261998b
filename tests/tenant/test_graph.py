"""The Graph sign-in reader on its own (a stand-in session; the real HTTPS path is in
tests/commands/test_evidence.py): paging, where a token may go, retries, every failure a
"missing" log with one line, and the join to users."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import AuthenticationError
from reconciler.model import TenantUser
from reconciler.tenant.exo.retry import RetryPolicy
from reconciler.tenant.exo.settings import CLOUDS, ConnectionSettings, CredentialSource
from reconciler.tenant.graph import SignInReader, _Folder, sign_in_filter, windows

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
GRAPH = "https://graph.microsoft.com"


class Tokens:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.invalidated: list[str] = []

    def get(self) -> str:
        if self.fail:
            raise AuthenticationError("AADSTS7000215: invalid client secret")
        return "tok"

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)


class Answer:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self._body = body
        self.headers = headers or {}

    def json(self) -> Any:
        if isinstance(self._body, (bytes, str)):
            return json.loads(self._body)
        return self._body


class Session:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.urls: list[str] = []

    def get(self, url: str, **kwargs: Any) -> Answer:
        assert kwargs["allow_redirects"] is False
        assert kwargs["headers"]["Authorization"] == "Bearer tok"
        self.urls.append(url)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def reader(answers: list[Any], tokens: Tokens | None = None) -> tuple[SignInReader, Session]:
    settings = ConnectionSettings(
        tenant="contoso.onmicrosoft.com",
        client_id="c",
        cloud=CLOUDS["commercial"],
        credential=CredentialSource("secret", secret_env="AZURE_CLIENT_SECRET"),
    )
    session = Session(answers)
    retry = RetryPolicy(sleep=lambda _: None, base_delay=0.01)
    return (
        SignInReader(settings, tokens or Tokens(), session, retry=retry, clock=lambda: NOW),  # type: ignore[arg-type]
        session,
    )


def event(upn: str, app: str, when: str, error: int = 0, uid: str | None = None) -> dict[str, Any]:
    return {
        "createdDateTime": when,
        "userPrincipalName": upn,
        "userId": uid or f"id-{upn}",
        "clientAppUsed": app,
        "status": {"errorCode": error},
        "ipAddress": "198.51.100.7",
    }


def test_pages_are_followed_and_folded_per_user_and_protocol() -> None:
    link = f"{GRAPH}/v1.0/auditLogs/signIns?$top=1000&$skiptoken=abc"
    r, session = reader(
        [
            Answer(
                200,
                {
                    "value": [
                        event("a@x", "IMAP4", "2026-12-01T10:00:00Z"),
                        event("a@x", "IMAP4", "2026-11-20T10:00:00Z"),
                        event("a@x", "IMAP4", "2026-12-01T11:00:00Z", error=50126),
                    ],
                    "@odata.nextLink": link,
                },
            ),
            Answer(
                200,
                {
                    "value": [
                        event("b@x", "Authenticated SMTP", "2026-12-02T09:00:00Z"),
                        event("b@x", "Browser", "2026-12-02T09:00:00Z"),  # not Basic: ignored
                        event("c@x", "Other clients", "2026-11-30T09:00:00Z"),
                    ]
                },
            ),
        ]
    )
    log = r.read(30)
    assert log.status == "read" and log.requests == 2 and log.events == 5
    assert session.urls[1] == link
    query = parse_qs(urlsplit(session.urls[0]).query)
    assert query["$top"] == ["1000"]
    assert unquote(query["$filter"][0]) == sign_in_filter("2026-11-02T12:00:00Z")
    users = [
        TenantUser("id-a@x", "a@x", "a", "UserMailbox", None),
        TenantUser("other-id", "B@X", "b", "UserMailbox", None),  # joined by UPN
    ]
    usage = log.joined(users)
    imap = usage.by_user["id-a@x"]["imap"]
    assert (imap.count, imap.last, imap.failures) == (2, "2026-12-01T10:00:00Z", 1)
    assert usage.by_user["other-id"]["smtp"].count == 1
    assert usage.unjoined == 1  # c@x is not a user of the snapshot


@pytest.mark.parametrize(
    "link",
    [
        "https://attacker.example/v1.0/auditLogs/signIns?$skiptoken=x",
        "http://graph.microsoft.com/v1.0/auditLogs/signIns?$skiptoken=x",
        f"{GRAPH}/v1.0/users?$skiptoken=x",
    ],
)
def test_a_next_link_elsewhere_is_never_followed(link: str) -> None:
    r, session = reader([Answer(200, {"value": [], "@odata.nextLink": link})])
    log = r.read(30)
    assert log.status == "missing" and "nextLink" in log.reason
    assert len(session.urls) == 1


def test_throttling_and_server_errors_are_retried() -> None:
    r, _ = reader(
        [
            Answer(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "1"}),
            Answer(503, b"<html/>"),
            requests.exceptions.ConnectionError("reset"),
            Answer(200, {"value": [event("a@x", "POP3", "2026-12-01T10:00:00Z")]}),
        ]
    )
    log = r.read(7)
    assert log.status == "read" and log.events == 1 and log.requests == 4


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            Answer(
                403, {"error": {"code": "Authentication_RequestFromNonPremiumTenantOrB2CTenant"}}
            ),
            "P1/P2 licence",
        ),
        (Answer(403, {"error": {"code": "Authorization_RequestDenied"}}), "AuditLog.Read.All"),
        (Answer(400, {"error": {"code": "BadRequest", "message": "bad filter"}}), "400 BadRequest"),
        (Answer(200, b"[1, 2]"), "not a JSON object"),
        (Answer(200, {"novalue": []}), "without a `value` list"),
    ],
)
def test_each_failure_is_one_line_and_never_raises(answer: Answer, words: str) -> None:
    r, _ = reader([answer])
    log = r.read(30)
    assert log.status == "missing" and words in log.reason and "\n" not in log.reason


def test_a_refused_token_is_renewed_once_then_reported() -> None:
    tokens = Tokens()
    r, session = reader(
        [Answer(401, {"error": {"code": "InvalidAuthenticationToken"}})] * 2, tokens
    )
    log = r.read(30)
    assert log.status == "missing" and "refused the app's token" in log.reason
    assert tokens.invalidated == ["tok"] and len(session.urls) == 2


def test_no_token_is_a_reason_without_the_secret() -> None:
    r, session = reader([], Tokens(fail=True))
    log = r.read(30)
    assert log.status == "missing" and log.reason.startswith("no Graph token")
    assert session.urls == []


@settings(max_examples=60, deadline=None)
@given(
    span=st.integers(min_value=1, max_value=40 * 86400),
    count=st.integers(min_value=1, max_value=32),
    offsets=st.lists(st.integers(min_value=0, max_value=50 * 86400), max_size=30),
)
def test_time_slices_hold_every_instant_once_or_twice_at_a_bound(
    span: int, count: int, offsets: list[int]
) -> None:
    start = NOW - dt.timedelta(seconds=span)
    slices = windows(start, NOW, count)
    assert 1 <= len(slices) <= count
    assert slices[0][0] == start.strftime("%Y-%m-%dT%H:%M:%SZ") and slices[-1][1] is None
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
    for offset in offsets:  # instants from the window's start on, past its end too
        when = (start + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")
        holding = [s for s, u in slices if s <= when and (u is None or when <= u)]
        bound = any(when == s for s, _ in slices[1:])
        assert len(holding) == (2 if bound else 1), when
        # and the filter says so: since and until are the ge and le of the slice
    since, until = slices[0]
    text = sign_in_filter(since, until)
    assert f"createdDateTime ge {since}" in text
    assert (f"createdDateTime le {until}" in text) == (until is not None)


def test_an_event_at_a_bound_two_slices_share_counts_once() -> None:
    fold = _Folder()
    fold.bounds = frozenset({"2026-11-20T00:00:00"})
    at_bound = {**event("a@x", "IMAP4", "2026-11-20T00:00:00Z"), "id": "e1"}
    other = {**event("a@x", "IMAP4", "2026-11-20T00:00:00Z"), "id": "e2"}
    inside = {**event("a@x", "IMAP4", "2026-11-21T00:00:00Z"), "id": "e3"}
    fold.page([at_bound, inside])  # the earlier slice: up to and including the bound
    fold.page([other, at_bound])  # the later one: from the bound on
    assert fold.events == 3
    assert fold.tallies["id-a@x"].uses["imap"][0] == 3
