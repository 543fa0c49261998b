"""build_report: effective policy per user and who can still use Basic SMTP AUTH."""

from __future__ import annotations

import pytest

from reconciler.model import PROTOCOL_NAMES, TenantPolicy, TenantSnapshot
from reconciler.report import build_report
from tests.export.tenants import contoso_like, user


def snapshot(org_disabled: bool | None = False, default: str | None = "Strict") -> TenantSnapshot:
    return TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=(
            TenantPolicy("Strict", frozenset()),
            TenantPolicy("SMTP relay devices", frozenset({"smtp"})),
            TenantPolicy("Legacy", frozenset({"imap", "pop"})),
        ),
        default_policy=default,
        users=(
            user("a", "Strict"),
            user("b", None),  # via the default
            user("c", "SMTP relay devices"),  # follows the org SMTP AUTH setting
            user("d", "SMTP relay devices", smtp_disabled=True),  # mailbox disables
            user("e", "SMTP relay devices", smtp_disabled=False),  # mailbox enables over org
            user("f", "Legacy"),
            user("g", "Gone Policy"),  # dangling
            user("h", None, smtp_disabled=False),
        ),
        smtp_org=None if org_disabled is None else ("disabled" if org_disabled else "enabled"),
        smtp_org_read=org_disabled is not None,
        mailboxes_read=org_disabled is not None,
    )


def _possible(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [u.upn.split("@")[0] for u in report.smtp_exposed]


def test_effective_policy_is_direct_else_default_else_none() -> None:
    report = build_report(snapshot(default="Strict"))
    by_upn = {u.upn.split("@")[0]: (u.effective_policy, u.via) for u in report.users}
    assert by_upn["usera"] == ("Strict", "direct")
    assert by_upn["userb"] == ("Strict", "default")
    assert by_upn["userg"] == ("Gone Policy", "direct")
    no_default = build_report(snapshot(default=None))
    assert {u.upn for u in no_default.no_policy} == {"userb@contoso.com", "userh@contoso.com"}


def test_smtp_exposure_with_smtp_auth_enabled_org_wide() -> None:
    report = build_report(snapshot(org_disabled=False))
    # c follows the org (enabled); d's mailbox disables it; e's mailbox enables it;
    # g's policy no longer exists, so nothing blocks.
    assert _possible(report) == ["userc", "usere", "userg"]
    assert report.counts() == {
        "users": 8,
        "direct_policy": 6,
        "via_default": 2,
        "no_policy": 0,
        "protected": 5,
        "smtp_basic_auth_possible": 3,
        "smtp_policy_allows_but_smtp_auth_off": 1,  # d: the mailbox disables SMTP AUTH
        "policy_not_found": 1,
        "smtp_basic_auth_unknown": 0,
    }


def test_smtp_exposure_with_smtp_auth_disabled_org_wide() -> None:
    report = build_report(snapshot(org_disabled=True))
    # Only the mailbox overrides that enable SMTP AUTH remain: e (policy allows) and not h
    # (h is on the default, which blocks Basic SMTP).
    assert _possible(report) == ["usere"]
    # c, d and g (dangling: nothing blocks) are safe only while SMTP AUTH stays off.
    assert report.counts()["smtp_policy_allows_but_smtp_auth_off"] == 3
    reasons = {u.upn.split("@")[0]: u.smtp_reason for u in report.users}
    assert reasons["usere"] == (
        "policy allows Basic SMTP; SMTP AUTH enabled on the mailbox (overrides org)"
    )
    assert reasons["userc"] == "policy allows Basic SMTP, but SMTP AUTH is disabled (org)"
    assert reasons["userd"] == "policy allows Basic SMTP, but SMTP AUTH is disabled (mailbox)"
    assert reasons["usera"] == "policy blocks Basic SMTP"


def test_no_policy_users_are_exposed_unless_smtp_auth_is_off() -> None:
    report = build_report(snapshot(org_disabled=True, default=None))
    assert _possible(report) == ["usere", "userh"]  # h: no policy, mailbox enables SMTP AUTH
    assert report.counts()["no_policy"] == 2


def test_unread_smtp_settings_count_as_enabled() -> None:
    report = build_report(snapshot(org_disabled=None))
    assert _possible(report) == ["userc", "usere", "userg"]
    c = next(u for u in report.users if u.upn.startswith("userc"))
    assert c.smtp_reason == (
        "policy allows Basic SMTP; SMTP AUTH setting unknown (not read or not shown; "
        "assumed enabled)"
    )


def test_policy_rows_count_direct_default_and_exposed_users() -> None:
    report = build_report(snapshot(org_disabled=False))
    rows = {p.name: p for p in report.policies}
    assert [p.name for p in report.policies] == [
        "Legacy",
        "SMTP relay devices",
        "Strict",
        "Gone Policy",
    ]
    strict = rows["Strict"]
    assert (strict.is_default, strict.direct_users, strict.default_users) == (True, 1, 2)
    relay = rows["SMTP relay devices"]
    assert (relay.direct_users, relay.smtp_exposed_users, relay.allowed) == (3, 2, ("smtp",))
    legacy = rows["Legacy"]
    assert legacy.allowed_inert == ("imap", "pop") and legacy.allowed_effective == ()
    gone = rows["Gone Policy"]
    assert (gone.exists, gone.direct_users, gone.allowed) == (False, 1, PROTOCOL_NAMES)


def test_no_policy_bucket_comes_last() -> None:
    report = build_report(snapshot(default=None))
    last = report.policies[-1]
    assert (last.name, last.total_users) == (None, 2)


def test_policy_names_match_case_insensitively_and_show_the_tenant_spelling() -> None:
    snap = TenantSnapshot(
        tenant="t",
        policies=(TenantPolicy("Block Basic Auth", frozenset()),),
        default_policy="block basic auth",
        users=(user(1, "BLOCK BASIC AUTH"), user(2, None)),
    )
    report = build_report(snap)
    assert [u.effective_policy for u in report.users] == ["Block Basic Auth"] * 2
    assert report.default_policy == "Block Basic Auth"
    assert report.policies[0].total_users == 2


@pytest.mark.parametrize("users", [10, 61])
def test_demo_like_tenant_with_a_drifted_default_exposes_everyone_on_it(users: int) -> None:
    report = build_report(contoso_like(users))
    # The drifted default allows Basic SMTP and SMTP AUTH is on: everyone is exposed.
    assert len(report.smtp_exposed) == users + 1
    assert report.protected == 0


def test_masked_hides_upns_and_ids_but_keeps_every_figure() -> None:
    from reconciler.report import masked, render_report

    report = build_report(snapshot())
    hidden = masked(report)
    assert [u.upn for u in hidden.users][:3] == [
        "u***@contoso.com",
        "u***@contoso.com",
        "u***@contoso.com",
    ]
    assert {u.id for u in hidden.users} == {""}
    assert hidden.counts() == report.counts()
    assert hidden.policies == report.policies
    for fmt in ("text", "markdown", "json", "csv"):
        out = render_report(hidden, fmt)
        assert "usere@contoso.com" not in out and "id-e" not in out


def test_an_org_switch_not_shown_is_unknown_and_counted_as_possible() -> None:
    snap = snapshot(org_disabled=False)
    hidden = TenantSnapshot(
        tenant=snap.tenant,
        policies=snap.policies,
        default_policy=snap.default_policy,
        users=snap.users,
        smtp_org=None,  # read, but Get-TransportConfig showed no value
        smtp_org_read=True,
        mailboxes_read=True,
    )
    report = build_report(hidden)
    c = next(u for u in report.users if u.upn.startswith("userc"))  # follows the org
    assert c.basic_smtp == "unknown" and c.smtp_basic_auth_possible
    e = next(u for u in report.users if u.upn.startswith("usere"))  # mailbox enables it
    assert e.basic_smtp == "allowed"
    assert report.counts()["smtp_basic_auth_unknown"] == 2  # c and g (dangling: no policy)
