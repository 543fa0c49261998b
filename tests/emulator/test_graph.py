"""The emulator's Graph room: the $filter subset, one-use skiptokens, pages, and a synthetic
log consistent with the tenant (no Basic sign-in where the user's policy blocks it)."""

from __future__ import annotations

import datetime as dt

import pytest

from reconciler.emulator.graph import FilterError, parse_filter
from reconciler.emulator.signins import SWITCH, SignIn, generate_sign_ins
from reconciler.emulator.state import TenantState
from reconciler.emulator.synthetic import generate_tenant

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _event(app: str, when: str = "2026-12-01T00:00:00Z", error: int = 0) -> SignIn:
    return SignIn("1", when, "U1", "a@contoso.com", "A", app, error, "198.51.100.1", "x")


def test_filter_subset() -> None:
    keep = parse_filter(
        "createdDateTime ge 2026-11-02T00:00:00Z and (clientAppUsed eq 'IMAP4' or "
        "clientAppUsed eq 'Authenticated SMTP') and status/errorCode eq 0"
    )
    assert keep(_event("IMAP4"))
    assert not keep(_event("IMAP4", error=50126))
    assert not keep(_event("Browser"))
    assert not keep(_event("IMAP4", when="2026-10-01T00:00:00Z"))
    assert parse_filter("userPrincipalName eq 'A@contoso.com'")(_event("POP3"))


@pytest.mark.parametrize(
    "text",
    ["clientAppUsed eq IMAP4", "location eq 'x'", "(clientAppUsed eq 'a'", "createdDateTime ge x"],
)
def test_filters_graph_would_refuse(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)


def test_synthetic_log_is_consistent_with_the_tenant() -> None:
    state = TenantState(generate_tenant(500, 7))
    events = generate_sign_ins(state, NOW)
    assert events == generate_sign_ins(state, NOW)  # deterministic
    assert [e.created for e in events] == sorted((e.created for e in events), reverse=True)
    oldest = (NOW - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(e.created >= oldest for e in events)
    users = {u["ExternalDirectoryObjectId"]: u for u in state.users}
    default = state.organization["DefaultAuthenticationPolicy"]
    apps = {e.client_app for e in events}
    assert {"Authenticated SMTP", "IMAP4", "Other clients", "Browser"} <= apps
    for e in events:
        switch = SWITCH.get(e.client_app)
        if switch is None:
            continue
        policy = state.policies[users[e.user_id].get("_policy") or default]
        assert policy[switch], f"{e.upn}: a Basic {e.client_app} sign-in its policy blocks"
    assert any(e.error_code for e in events)  # password spray against what is still allowed
