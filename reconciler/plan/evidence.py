"""Evidence: which of a plan's changes take a protocol away from users who really use it.

Works on a finished plan and the snapshot it was made from (so the planner's hot loop is not
touched): the policy switches before and after, each user's effective policy before and after,
and the Basic SMTP definition of `model.basic_smtp`. For every user the sign-in log saw, each
protocol they used successfully that is allowed for them now and blocked after the plan is
charged to ONE change, the one that takes it away:

* their own Set-User (user_assign / user_clear) when their effective policy changes by it;
* else the default change, for a user who follows the default;
* else the update (or replace) of the policy they stay on;
* for smtp allowed by the policy both before and after: their mailbox's SMTP AUTH change, else
  the organization's.

A change that takes protocols away carries `ChangeEvidence` for each of them (0 users when
nobody used it; `users` None when the log could not be read), and the plan an
`EvidenceSummary`: the distinct users blocked from something they used, and the policies that
allow a protocol nobody they govern used in the window (candidates to remove).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence

from reconciler.model import (
    OTHER,
    PROTOCOL_NAMES,
    Allowed,
    Change,
    ChangeEvidence,
    DefaultChange,
    DesiredState,
    EvidenceSummary,
    MailboxSmtpChange,
    OrgSmtp,
    Plan,
    PolicyCreate,
    PolicyReplace,
    PolicyUpdate,
    ProtocolEvidence,
    SignInUsage,
    SmtpOrgChange,
    SmtpSetting,
    TenantSnapshot,
    TenantUser,
    UnusedAllowance,
    UserChange,
    basic_smtp,
)

ALL_ALLOWED: Allowed = frozenset(PROTOCOL_NAMES)  # no policy layer: nothing is blocked by it
Key = tuple[str, str]  # (kind family, object): which change a loss is charged to


def _fold(name: str | None) -> str | None:
    return None if name is None else name.casefold()


class _World:
    """Switches, defaults and SMTP AUTH before and after a plan."""

    def __init__(self, plan: Plan, snapshot: TenantSnapshot) -> None:
        self.before: dict[str, Allowed] = {p.name.casefold(): p.allow for p in snapshot.policies}
        self.after = dict(self.before)
        self.user_changes: dict[str, UserChange] = {}
        self.mailbox_changes: dict[str, MailboxSmtpChange] = {}
        self.updated: set[str] = set()
        self.org_before: OrgSmtp | None = snapshot.smtp_org
        self.org_after: OrgSmtp | None = snapshot.smtp_org
        self.default_change = False
        for change in plan.changes:
            if isinstance(change, PolicyCreate):
                self.after[change.policy.casefold()] = change.after
            elif isinstance(change, PolicyUpdate | PolicyReplace):
                folded = change.policy.casefold()
                allowed = set(self.before.get(folded, frozenset()))
                for f in change.fields:
                    (allowed.add if f.after else allowed.discard)(f.protocol)
                self.after[folded] = frozenset(allowed)
                self.updated.add(folded)
            elif isinstance(change, UserChange):
                self.user_changes[change.user_id] = change
            elif isinstance(change, MailboxSmtpChange):
                self.mailbox_changes[change.user_id] = change
            elif isinstance(change, SmtpOrgChange):
                self.org_after = change.after
            elif isinstance(change, DefaultChange):
                self.default_change = True
        self.default_before = _fold(plan.default_before)
        self.default_after = _fold(plan.default_policy)
        self.mailboxes = snapshot.mailboxes_read

    def allowed_before(self, folded: str | None) -> Allowed:
        return ALL_ALLOWED if folded is None else self.before.get(folded, frozenset())

    def allowed_after(self, folded: str | None) -> Allowed:
        return ALL_ALLOWED if folded is None else self.after.get(folded, frozenset())

    def effective(self, user: TenantUser) -> tuple[str | None, str | None]:
        """The user's effective policy (casefolded) before and after the plan."""
        direct_before = _fold(user.policy)
        change = self.user_changes.get(user.id)
        direct_after = _fold(change.after) if change is not None else direct_before
        before = direct_before if direct_before is not None else self.default_before
        after = direct_after if direct_after is not None else self.default_after
        return before, after

    def smtp_settings(self, user: TenantUser) -> tuple[SmtpSetting | None, SmtpSetting | None]:
        change = self.mailbox_changes.get(user.id)
        return user.smtp_auth, (change.after if change is not None else user.smtp_auth)

    def losses(self, user: TenantUser, used: Sequence[str]) -> dict[str, Key]:
        """Protocols in `used` this user loses, each with the change that takes it away."""
        before_f, after_f = self.effective(user)
        allowed_before, allowed_after = self.allowed_before(before_f), self.allowed_after(after_f)
        out: dict[str, Key] = {}
        for protocol in used:
            if protocol not in allowed_before:
                continue  # already blocked: nothing is taken away
            if protocol not in allowed_after:
                out[protocol] = self._policy_key(user, before_f, after_f)
            elif protocol == "smtp":
                key = self._smtp_key(user)
                if key is not None:
                    out[protocol] = key
        return out

    def _policy_key(self, user: TenantUser, before_f: str | None, after_f: str | None) -> Key:
        if before_f != after_f:
            if user.id in self.user_changes:
                return ("user", user.id)
            return ("default", "")
        return ("policy", after_f or "")

    def _smtp_key(self, user: TenantUser) -> Key | None:
        """The SMTP AUTH change that blocks Basic SMTP the policy still allows, if any."""
        setting_before, setting_after = self.smtp_settings(user)
        if not self.mailboxes:
            # Mailbox settings unread: a user who used Basic SMTP and loses the org switch
            # is counted as blocked (their mailbox may follow it; the plan cannot tell).
            if self.org_before != "disabled" and self.org_after == "disabled":
                return ("smtp_org", "")
            return None
        before = basic_smtp(True, setting_before, self.org_before, mailbox=True)
        after = basic_smtp(True, setting_after, self.org_after, mailbox=True)
        if before == "blocked" or after == "allowed":
            return None
        if setting_before != setting_after:
            return ("mailbox", user.id)
        return ("smtp_org", "")


def _key_of(change: Change) -> Key | None:
    if isinstance(change, UserChange):
        return ("user", change.user_id)
    if isinstance(change, MailboxSmtpChange):
        return ("mailbox", change.user_id)
    if isinstance(change, DefaultChange):
        return ("default", "")
    if isinstance(change, SmtpOrgChange):
        return ("smtp_org", "")
    if isinstance(change, PolicyUpdate | PolicyReplace):
        return ("policy", change.policy.casefold())
    return None


def _taken(change: Change, world: _World) -> tuple[frozenset[str], int]:
    """The protocols a change takes away from users, and from how many users."""
    if isinstance(change, PolicyUpdate | PolicyReplace):
        taken = frozenset(f.protocol for f in change.fields if f.before and not f.after)
        if isinstance(change, PolicyUpdate):
            return taken, change.affected_users
        return taken, len(change.holders) + (1 if change.is_default else 0)
    if isinstance(change, DefaultChange):
        taken = world.allowed_before(_fold(change.before)) - world.allowed_after(
            _fold(change.after)
        )
        return taken, change.affected_users
    if isinstance(change, UserChange):
        before = _fold(change.before) if change.before is not None else world.default_before
        after = _fold(change.after) if change.after is not None else world.default_after
        if before == after:
            return frozenset(), 0  # same effective policy: any loss is its update's doing
        taken = world.allowed_before(before) - world.allowed_after(after)
        if change.basic_smtp_before is not None and change.basic_smtp_before != "allowed":
            taken -= {"smtp"}  # Basic SMTP was not open for this mailbox anyway
        return taken, 1
    if isinstance(change, MailboxSmtpChange):
        loses = change.basic_smtp_before == "allowed" and change.basic_smtp_after != "allowed"
        return (frozenset({"smtp"}) if loses else frozenset()), 1
    if (
        isinstance(change, SmtpOrgChange)
        and change.after == "disabled"
        and change.before != "disabled"
    ):
        affected = change.affected_users
        return frozenset({"smtp"}), (1 if affected is None else affected)
    return frozenset(), 0


def attach_evidence(plan: Plan, snapshot: TenantSnapshot, desired: DesiredState) -> Plan:
    """`plan` with evidence on its changes and its summary (unchanged when none was asked)."""
    usage = snapshot.sign_ins
    if usage is None:
        return plan
    world = _World(plan, snapshot)
    charged: dict[Key, dict[str, list[tuple[str, str | None]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    users_by_id = {u.id: u for u in snapshot.users} if usage.read else {}
    if usage.read:
        for user_id, uses in usage.by_user.items():
            user = users_by_id.get(user_id)
            if user is None:
                continue
            used = [p for p, use in uses.items() if p != OTHER and use.count > 0]
            for protocol, key in world.losses(user, used).items():
                charged[key][protocol].append((user_id, uses[protocol].last))
    changes: list[Change] = []
    blocked: set[str] = set()
    for change in plan.changes:
        taken, affected = _taken(change, world)
        change_key = _key_of(change)
        if not taken or change_key is None:
            changes.append(change)
            continue
        protocols: dict[str, ProtocolEvidence] = {}
        ids: set[str] = set()
        for protocol in PROTOCOL_NAMES:
            if protocol not in taken:
                continue
            if not usage.read:
                protocols[protocol] = ProtocolEvidence(None)
                continue
            who = charged.get(change_key, {}).get(protocol, [])
            ids.update(user_id for user_id, _ in who)
            last = max((when for _, when in who if when), default=None)
            protocols[protocol] = ProtocolEvidence(len(who), last)
        blocked |= ids
        evidence = ChangeEvidence(protocols, frozenset(ids), affected)
        changes.append(dataclasses.replace(change, evidence=evidence))  # type: ignore[arg-type]
    summary = EvidenceSummary(
        status=usage.status,
        days=usage.days,
        since=usage.since,
        reason=usage.reason,
        active_users_blocked=len(blocked),
        unused=_unused(world, snapshot, usage, desired) if usage.read else (),
    )
    return dataclasses.replace(plan, changes=tuple(changes), evidence=summary)


def _unused(
    world: _World, snapshot: TenantSnapshot, usage: SignInUsage, desired: DesiredState
) -> tuple[UnusedAllowance, ...]:
    """Policies (after the plan) that allow a protocol none of the users they govern used."""
    governed: dict[str | None, int] = defaultdict(int)
    used: dict[str | None, set[str]] = defaultdict(set)
    for user in snapshot.users:
        _, after = world.effective(user)
        governed[after] += 1
        uses = usage.by_user.get(user.id)
        if uses:
            used[after].update(p for p, use in uses.items() if use.count > 0)
    rules_of: dict[str, list[str]] = defaultdict(list)
    for rule in desired.assignments.rules:
        if rule.policy is not None:
            rules_of[rule.policy.casefold()].append(rule.name)
    names = {p.name.casefold(): p.name for p in snapshot.policies}
    names.update({spec.name.casefold(): spec.name for spec in desired.policies})
    out = []
    for folded, count in sorted(governed.items(), key=lambda kv: kv[0] or ""):
        if folded is None or count == 0:
            continue
        for protocol in PROTOCOL_NAMES:
            if protocol in world.allowed_after(folded) and protocol not in used[folded]:
                out.append(
                    UnusedAllowance(
                        names.get(folded, folded), protocol, count, tuple(rules_of.get(folded, ()))
                    )
                )
    return tuple(out)


def active_blocked_ids(changes: Sequence[Change]) -> set[str]:
    """Distinct users the changes block from a protocol they used (apply: exactly these)."""
    ids: set[str] = set()
    for change in changes:
        evidence = getattr(change, "evidence", None)
        if evidence is not None:
            ids |= evidence.user_ids
    return ids


def takes_protocols_away(changes: Sequence[Change]) -> Mapping[str, int]:
    """protocol -> users some change takes it away from (0-user changes not counted)."""
    out: dict[str, int] = defaultdict(int)
    for change in changes:
        evidence = getattr(change, "evidence", None)
        if evidence is not None and evidence.affected > 0:
            for protocol in evidence.protocols:
                out[protocol] += evidence.affected
    return out
