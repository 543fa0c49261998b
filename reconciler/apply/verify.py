"""After an apply: read the tenant again and confirm the applied changes hold.

Policies and the default are re-read in full (Get-AuthenticationPolicy and
Get-OrganizationConfig: 2 requests, whatever the tenant's size). Users are re-read one by one
(10 per $batch), so by default only an even sample of the changed users is checked (every
target policy included, at most USER_SAMPLE users): a systematic failure (writes that answer
success and do not take, a wrong identity) shows in any sample, at a constant cost; reading
every changed user would add a request per 10 changes, and a paged read of the whole tenant
would double apply's reads. `users="all"` checks every one. A later `authpolicy plan` or
`drift` compares everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from reconciler.apply.report import ApplyReport, describe_change
from reconciler.model import (
    Change,
    DefaultChange,
    MailboxSmtpChange,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    ReplaceResume,
    SmtpOrgChange,
    SnapshotNeeds,
    TenantSnapshot,
    UserChange,
)
from reconciler.tenant.base import Tenant

USER_SAMPLE = 20  # two $batch requests of 10
VerifyUsers = Literal["sample", "all"]
VERIFY_USERS: tuple[VerifyUsers, ...] = ("sample", "all")


@dataclass
class Verification:
    """What the verification read checked and what it found."""

    problems: list[str] = field(default_factory=list)
    changes: int = 0  # applied changes other than user ones, all checked
    users_changed: int = 0  # users the applied changes moved (replace holders included)
    users_checked: int = 0  # of those, how many were re-read
    mailboxes_changed: int = 0  # mailboxes whose SMTP AUTH setting the applied changes set
    mailboxes_checked: int = 0

    def summary(self) -> str:
        """One line for the apply summary; empty when nothing was applied."""
        if not self.changes and not self.users_changed and not self.mailboxes_changed:
            return ""
        if self.problems:
            return (
                f"Verification: {len(self.problems)} applied change(s) do not hold (listed "
                "above); run plan to see the tenant as it is now."
            )
        parts = []
        if self.changes:
            parts.append(_count(self.changes, "policy or default change"))
        if self.users_checked == self.users_changed and self.users_changed:
            parts.append(f"all {_count(self.users_changed, 'changed user')}")
        elif self.users_changed:
            parts.append(
                f"{self.users_checked:,} of {self.users_changed:,} changed users (an even "
                "sample; --check-users all re-reads every one)"
            )
        if self.mailboxes_changed:
            parts.append(
                f"{self.mailboxes_checked:,} of {self.mailboxes_changed:,} mailbox SMTP AUTH "
                "settings"
            )
        return f"Verified: {' and '.join(parts)} hold."


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _same(a: str | None, b: str | None) -> bool:
    return (a or "").casefold() == (b or "").casefold() and (a is None) == (b is None)


def verify_report(
    report: ApplyReport, tenant: Tenant, users: VerifyUsers = "sample"
) -> Verification:
    """Re-read what the applied changes touched; one problem line per change that does not hold.

    Changes that were not applied are not checked: the report already says what happened to
    them. See the module docstring for which users are re-read.
    """
    result = Verification()
    applied = [o.change for o in report.outcomes if o.status == "applied"]
    if not applied:
        return result
    snapshot = tenant.read_snapshot(SnapshotNeeds(users=False))
    moved: list[tuple[str, str | None]] = []  # (user id, policy it should hold)
    for change in applied:
        if isinstance(change, UserChange):
            moved.append((change.user_id, change.after))
        elif isinstance(change, MailboxSmtpChange | SmtpOrgChange):
            continue  # _verify_smtp counts and checks them
        else:
            result.changes += 1
            if isinstance(change, PolicyReplace):
                moved.extend((uid, change.policy) for uid in change.holders)
    unique = list(dict(moved).items())  # one per user, in order; the last target wins
    result.users_changed = len(unique)
    chosen = unique if users == "all" else even_sample(unique, USER_SAMPLE)
    live_users = dict(tenant.read_users([uid for uid, _ in chosen])) if chosen else {}
    result.users_checked = len(chosen)
    checked = {uid for uid, _ in chosen}
    for change in applied:
        if isinstance(change, UserChange) and change.user_id not in checked:
            continue
        if isinstance(change, MailboxSmtpChange | SmtpOrgChange):
            continue  # checked below
        problem = _check(change, snapshot, live_users)
        if problem is not None:
            result.problems.append(f"{describe_change(change)}: {problem}")
    _verify_smtp(applied, tenant, users, result)
    return result


def _verify_smtp(
    applied: Sequence[Change], tenant: Tenant, users: VerifyUsers, result: Verification
) -> None:
    """The organization's SMTP AUTH switch (1 request) and a sample of the mailboxes set."""
    for change in applied:
        if isinstance(change, SmtpOrgChange):
            result.changes += 1
            live = tenant.read_smtp_org()
            if live != change.after:
                result.problems.append(
                    f"{describe_change(change)}: Get-TransportConfig shows "
                    f"{live or 'no value'}, expected {change.after}"
                )
    mailboxes = [(c.user_id, c.after) for c in applied if isinstance(c, MailboxSmtpChange)]
    if not mailboxes:
        return
    result.mailboxes_changed = len(mailboxes)
    chosen = mailboxes if users == "all" else even_sample(mailboxes, USER_SAMPLE)  # type: ignore[arg-type]
    live_settings = dict(tenant.read_mailbox_settings([uid for uid, _ in chosen]))
    result.mailboxes_checked = len(chosen)
    by_id = {c.user_id: c for c in applied if isinstance(c, MailboxSmtpChange)}
    for uid, wanted in chosen:
        if uid not in live_settings:
            continue  # deleted since: nothing left to hold
        if live_settings[uid] != wanted:
            result.problems.append(
                f"{describe_change(by_id[uid])}: the mailbox is {live_settings[uid]}, "
                f"expected {wanted}"
            )


def even_sample(items: list[tuple[str, str | None]], limit: int) -> list[tuple[str, str | None]]:
    """At most `limit` items: the first one of each target, then evenly spaced ones, in order.

    Deterministic, so the same apply checks the same users; every target policy (and a
    clear) is represented as long as there are fewer targets than `limit`.
    """
    if len(items) <= limit:
        return list(items)
    picked: set[int] = set()
    seen: set[str | None] = set()
    for index, (_, target) in enumerate(items):
        key = target.casefold() if target is not None else None
        if key not in seen and len(picked) < limit:
            seen.add(key)
            picked.add(index)
    step = len(items) / limit
    for k in range(limit):
        if len(picked) >= limit:
            break
        picked.add(int(k * step))
    for index in range(len(items)):  # the spaced picks that hit a target's first: fill in
        if len(picked) >= limit:
            break
        picked.add(index)
    return [items[i] for i in sorted(picked)]


def _check(change: object, snapshot: TenantSnapshot, users: dict[str, str | None]) -> str | None:
    if isinstance(change, PolicyCreate | PolicyReplace):
        live = snapshot.policy(change.policy)
        if live is None:
            return "the policy does not exist"
        if live.allow != change.after:
            return f"it allows {_listed(live.allow)}, expected {_listed(change.after)}"
        if isinstance(change, PolicyReplace):
            lost = [
                uid
                for uid in change.holders
                if uid in users and not _same(users[uid], change.policy)
            ]
            if lost:
                return f"{len(lost)} holder(s) no longer hold it (first: {lost[0]})"
            if change.is_default and not _same(snapshot.default_policy, change.policy):
                return f"the default is {snapshot.default_policy!r}, expected {change.policy!r}"
        return None
    if isinstance(change, PolicyUpdate):
        live = snapshot.policy(change.policy)
        if live is None:
            return "the policy does not exist"
        wrong = [f.protocol for f in change.fields if (f.protocol in live.allow) != f.after]
        return f"switch(es) {', '.join(wrong)} did not take" if wrong else None
    if isinstance(change, PolicyDelete):
        return "the policy still exists" if snapshot.policy(change.policy) else None
    if isinstance(change, ReplaceResume):
        if snapshot.policy(change.holding) is not None:
            return f"the holding policy {change.holding!r} still exists"
        return None if snapshot.policy(change.policy) else "the policy does not exist"
    if isinstance(change, DefaultChange):
        if _same(snapshot.default_policy, change.after):
            return None
        return f"the default is {snapshot.default_policy!r}, expected {change.after!r}"
    if isinstance(change, UserChange):
        if change.user_id not in users:
            return None  # deleted since: nothing left to hold
        live_policy = users[change.user_id]
        if _same(live_policy, change.after):
            return None
        return f"the user holds {live_policy!r}, expected {change.after!r}"
    return None


def _listed(allow: frozenset[str]) -> str:
    return ", ".join(sorted(allow)) or "nothing"
