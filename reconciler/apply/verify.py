"""After an apply: read the tenant again and confirm every applied change holds."""

from __future__ import annotations

from reconciler.apply.report import ApplyReport, describe_change
from reconciler.model import (
    DefaultChange,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    SnapshotNeeds,
    TenantSnapshot,
    UserChange,
)
from reconciler.tenant.base import Tenant


def _same(a: str | None, b: str | None) -> bool:
    return (a or "").casefold() == (b or "").casefold() and (a is None) == (b is None)


def verify_report(report: ApplyReport, tenant: Tenant) -> list[str]:
    """Re-read what the applied changes touched; one line per change that does not hold.

    Policies and the default come from a fresh snapshot; users from `read_users` (only the
    users this run changed). Changes that were not applied are not checked: the report
    already says what happened to them.
    """
    applied = [o.change for o in report.outcomes if o.status == "applied"]
    if not applied:
        return []
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    user_ids = [c.user_id for c in applied if isinstance(c, UserChange)]
    for change in applied:
        if isinstance(change, PolicyReplace):
            user_ids.extend(change.holders)
    live_users = _read_users(tenant, snapshot, user_ids)
    problems: list[str] = []
    for change in applied:
        problem = _check(change, snapshot, live_users)
        if problem is not None:
            problems.append(f"{describe_change(change)}: {problem}")
    return problems


def _read_users(
    tenant: Tenant, snapshot: TenantSnapshot, user_ids: list[str]
) -> dict[str, str | None]:
    if not user_ids:
        return {}
    # The snapshot already holds every user; asking again per user would cost a call each.
    if snapshot.users:
        wanted = set(user_ids)
        return {u.id: u.policy for u in snapshot.users if u.id in wanted}
    return dict(tenant.read_users(user_ids))


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
