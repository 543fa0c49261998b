"""make_plan with SMTP AUTH: mailbox and org changes, Basic SMTP before/after, weakens, the
guard's count, expiring and expired exceptions, and what is not guessed."""

from __future__ import annotations

import dataclasses
import datetime as dt

from reconciler.model import (
    Limit,
    MailboxSmtpChange,
    MatchSpec,
    Rule,
    Safety,
    SmtpAuthSpec,
    SmtpOrgChange,
    UserChange,
    basic_smtp,
)
from reconciler.plan import make_plan
from tests.plan.scenarios import ALL, desired, policy, snapshot, spec, user

TODAY = dt.date(2026, 12, 27)
SCANNERS = MatchSpec(upn=("scanner-*@contoso.com",))


def _state(
    smtp_rule: str | None = "enabled",
    *,
    organization: str | None = "disabled",
    unmatched: str = "organization",
    expires: dt.date | None = None,
    owner: str | None = "facilities@contoso.com",
    relay_allows: tuple[str, ...] = ("smtp",),
    safety: Safety | None = None,
):  # type: ignore[no-untyped-def]
    state = desired(
        [spec("Block"), spec("Relay", *relay_allows)],
        [
            Rule(
                "devices",
                "Relay",
                SCANNERS,
                smtp_auth=smtp_rule,  # type: ignore[arg-type]
                owner=owner,
                reason="scan to mail",
                expires=expires,
            ),
            Rule("everyone", "Block", ALL),
        ],
        default="Block",
        safety=safety,
    )
    return dataclasses.replace(
        state,
        smtp_auth=SmtpAuthSpec(organization=organization, unmatched=unmatched),  # type: ignore[arg-type]
    )


def _tenant(org: str | None = "enabled", **settings: str | None):  # type: ignore[no-untyped-def]
    """Scanner 1 on Relay with SMTP AUTH on; ann on Block, enabled by hand; bob follows the
    org; a mail user without a mailbox."""
    values = {"scanner-1": "enabled", "ann": "enabled", "bob": "organization", **settings}
    users = [
        dataclasses.replace(user("scanner-1@contoso.com", "Relay"), smtp_auth=values["scanner-1"]),
        dataclasses.replace(user("ann@contoso.com", "Block"), smtp_auth=values["ann"]),
        dataclasses.replace(user("bob@contoso.com", "Block"), smtp_auth=values["bob"]),
        user("mu@contoso.com", None, recipient_type="MailUser"),
    ]
    return dataclasses.replace(
        snapshot([policy("Block"), policy("Relay", "smtp")], users, default="Block"),
        smtp_org=org,
        smtp_org_read=True,
        mailboxes_read=True,
    )


def _of(plan, kind):  # type: ignore[no-untyped-def]
    return [c for c in plan.changes if isinstance(c, kind)]


def test_the_one_definition_of_basic_smtp() -> None:
    assert basic_smtp(True, "enabled", "disabled", mailbox=True) == "allowed"
    assert basic_smtp(True, "organization", "enabled", mailbox=True) == "allowed"
    assert basic_smtp(True, "organization", None, mailbox=True) == "unknown"
    assert basic_smtp(True, "disabled", "enabled", mailbox=True) == "blocked"
    # SMTP AUTH on but the policy blocks Basic smtp: OAuth-only submission.
    assert basic_smtp(False, "enabled", "enabled", mailbox=True) == "blocked"
    assert basic_smtp(True, "enabled", "enabled", mailbox=False) == "blocked"


def test_org_and_mailbox_changes_with_basic_smtp_before_and_after() -> None:
    plan = make_plan(_state(), _tenant(), TODAY)
    (org,) = _of(plan, SmtpOrgChange)
    assert (org.before, org.after, org.weakens) == ("enabled", "disabled", False)
    assert org.affected_users == 2  # ann (reset to follow it) and bob
    boxes = _of(plan, MailboxSmtpChange)
    assert [(b.user, b.before, b.after, b.rule) for b in boxes] == [
        ("ann@contoso.com", "enabled", "organization", "everyone")
    ]
    # ann's policy blocks smtp: SMTP AUTH on was OAuth-only; blocked before and after.
    assert (boxes[0].basic_smtp_before, boxes[0].basic_smtp_after, boxes[0].weakens) == (
        "blocked",
        "blocked",
        False,
    )
    assert plan.mailboxes_read and not _of(plan, UserChange)
    kinds = [c.kind for c in plan.changes]
    assert kinds == ["smtp_org_change", "mailbox_smtp_change"]


def test_turning_a_mailbox_on_under_a_policy_that_allows_smtp_weakens() -> None:
    plan = make_plan(_state(), _tenant(**{"scanner-1": "disabled"}), TODAY)
    (box,) = [b for b in _of(plan, MailboxSmtpChange) if b.user.startswith("scanner")]
    assert (box.before, box.after) == ("disabled", "enabled")
    assert (box.basic_smtp_before, box.basic_smtp_after, box.weakens) == (
        "blocked",
        "allowed",
        True,
    )


def test_an_exception_that_cannot_work_is_a_warning_not_a_weakening() -> None:
    plan = make_plan(_state(relay_allows=()), _tenant(**{"scanner-1": "disabled"}), TODAY)
    (box,) = [b for b in _of(plan, MailboxSmtpChange) if b.user.startswith("scanner")]
    assert not box.weakens and box.basic_smtp_after == "blocked"
    assert (
        'rule "devices" sets smtp_auth: enabled, but its policy "Relay" blocks Basic smtp: the '
        "exception cannot work (SMTP AUTH with OAuth only); allow smtp in that policy or assign "
        "one that does"
    ) in plan.warnings


def test_enabling_the_org_switch_weakens_when_someone_follows_it_with_smtp_allowed() -> None:
    relaxed = _state(None, organization="enabled", unmatched="ignore")
    plan = make_plan(relaxed, _tenant(org="disabled", bob="organization"), TODAY)
    # bob follows the org but his policy blocks smtp: nothing opens.
    assert _of(plan, SmtpOrgChange)[0].weakens is False
    plan = make_plan(relaxed, _tenant(org="disabled", **{"scanner-1": "organization"}), TODAY)
    assert _of(plan, SmtpOrgChange)[0].weakens is True
    # Without the mailboxes read (the file sets none), turning it on is assumed to open.
    bare = dataclasses.replace(relaxed, assignments=dataclasses.replace(
        relaxed.assignments,
        rules=tuple(dataclasses.replace(r, smtp_auth=None) for r in relaxed.assignments.rules),
    ))  # fmt: skip
    tenant = dataclasses.replace(_tenant(org="disabled"), mailboxes_read=False)
    (org,) = _of(make_plan(bare, tenant, TODAY), SmtpOrgChange)
    assert org.weakens is True and org.affected_users is None


def test_a_user_whose_policy_and_mailbox_change_counts_once() -> None:
    state = _state(safety=Safety(max_user_changes=Limit(1)))
    # ann: policy Relay by hand (drift) and SMTP AUTH enabled: both move.
    tenant = _tenant()
    users = tuple(
        dataclasses.replace(u, policy="Relay") if u.upn == "ann@contoso.com" else u
        for u in tenant.users
    )
    plan = make_plan(state, dataclasses.replace(tenant, users=users), TODAY)
    assert {c.user for c in _of(plan, UserChange)} == {"ann@contoso.com"}
    assert {c.user for c in _of(plan, MailboxSmtpChange)} == {"ann@contoso.com"}
    assert plan.guards == ()  # one user, within max_user_changes 1
    (change,) = _of(plan, UserChange)
    assert (change.basic_smtp_before, change.basic_smtp_after) == ("allowed", "blocked")


def test_rules_for_users_without_a_mailbox_and_the_unknown_org_are_named() -> None:
    state = _state()
    state = dataclasses.replace(state, assignments=dataclasses.replace(
        state.assignments,
        recipient_types=(*state.assignments.recipient_types, "MailUser"),
        rules=(
            Rule("mail users", None, MatchSpec(recipient_type=("MailUser",)), smtp_auth="enabled"),
            *state.assignments.rules,
        ),
    ))  # fmt: skip
    plan = make_plan(state, _tenant(org=None), TODAY)
    assert (
        'rule "mail users" sets smtp_auth for 1 user without a mailbox (no Get-CASMailbox '
        "object), left alone: mu@contoso.com"
    ) in plan.warnings
    assert any(w.startswith("Get-TransportConfig does not show") for w in plan.warnings)
    (org,) = _of(plan, SmtpOrgChange)
    assert org.before is None and org.after == "disabled"


def test_an_exception_warns_its_owner_then_expires_and_its_users_fall_through() -> None:
    state = _state(expires=dt.date(2027, 1, 10))
    soon = make_plan(state, _tenant(), TODAY)
    assert (
        'owner facilities@contoso.com: rule "devices" expires on 2027-01-10 (in 14 days; '
        "governs 1 user; reason: scan to mail); extend `expires` or let the users fall to the "
        "later rules"
    ) in soon.warnings
    assert not any(
        "expires on" in w for w in make_plan(state, _tenant(), dt.date(2026, 12, 1)).warnings
    )
    expired = make_plan(state, _tenant(), dt.date(2027, 1, 10))
    assert (
        'rule "devices" (owner facilities@contoso.com) expired on 2027-01-10: it no longer '
        'matches, and its 1 user fall to the later rules (1 user to rule "everyone"): '
        "scanner-1@contoso.com"
    ) in expired.warnings
    (move,) = _of(expired, UserChange)
    assert (move.user, move.before, move.after, move.rule) == (
        "scanner-1@contoso.com",
        "Relay",
        "Block",
        "everyone",
    )
    assert expired.as_of == "2027-01-10" and soon.as_of == "2026-12-27"
    # The date is an input: hashed, and named when it moves.
    assert soon.inputs["as_of"] != expired.inputs["as_of"]
    assert soon.fingerprint != make_plan(state, _tenant(), dt.date(2026, 12, 28)).fingerprint


def test_expiry_warnings_are_grouped_by_owner() -> None:
    state = _state(expires=dt.date(2027, 1, 1))
    rules = (
        *state.assignments.rules[:1],
        Rule("printers", "Relay", MatchSpec(upn=("printer-*@contoso.com",)),
             owner="facilities@contoso.com", expires=dt.date(2027, 1, 20)),
        Rule("legacy app", "Relay", MatchSpec(upn=("app@contoso.com",)),
             expires=dt.date(2027, 1, 5)),
        *state.assignments.rules[1:],
    )  # fmt: skip
    state = dataclasses.replace(
        state, assignments=dataclasses.replace(state.assignments, rules=rules)
    )
    owners = [w for w in make_plan(state, _tenant(), TODAY).warnings if w.startswith("owner ")]
    assert len(owners) == 2
    assert owners[0].startswith('owner (no owner): rule "legacy app" expires on 2027-01-05')
    assert owners[1].startswith(
        'owner facilities@contoso.com: rule "devices" expires on 2027-01-01 (in 5 days; '
    )
    assert 'rule "printers" expires on 2027-01-20 (in 24 days; governs 0 users)' in owners[1]


def test_without_mailbox_settings_the_plan_does_not_guess() -> None:
    state = desired([spec("Block")], [Rule("everyone", "Block", ALL)])
    plan = make_plan(state, snapshot([policy("Block")], [user("a@contoso.com")]), TODAY)
    (change,) = plan.changes
    assert isinstance(change, UserChange)
    assert change.basic_smtp_before is None and not plan.mailboxes_read
