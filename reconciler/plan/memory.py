"""What the tenant looks like after a plan's changes: the planner's model of apply."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from reconciler.model import (
    Change,
    DefaultChange,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    TenantPolicy,
    TenantSnapshot,
    UserChange,
)


def apply_changes_in_memory(snapshot: TenantSnapshot, changes: Iterable[Change]) -> TenantSnapshot:
    """A new snapshot with `changes` made, in order, exactly as apply would make them.

    Policies are found by name case-insensitively (as Exchange finds them). Raises ValueError
    for a change that cannot be made: creating a policy that exists, or changing, deleting or
    assigning one that does not, or changing a user that is not in the snapshot.
    """
    policies: dict[str, TenantPolicy] = {p.name.casefold(): p for p in snapshot.policies}
    default = snapshot.default_policy
    user_policy: dict[str, str | None] = {}
    known_users = {u.id for u in snapshot.users}

    def existing(name: str) -> TenantPolicy:
        policy = policies.get(name.casefold())
        if policy is None:
            raise ValueError(f'policy "{name}" does not exist')
        return policy

    for change in changes:
        if isinstance(change, PolicyCreate):
            if change.policy.casefold() in policies:
                raise ValueError(f'policy "{change.policy}" already exists')
            policies[change.policy.casefold()] = TenantPolicy(change.policy, change.after)
        elif isinstance(change, PolicyUpdate | PolicyReplace):
            policy = existing(change.policy)
            if isinstance(change, PolicyReplace):
                # A new object (new guid and DN) with the same name; holders and default are
                # re-pointed at it by apply, so links by name stay as they were.
                policies[change.policy.casefold()] = TenantPolicy(policy.name, change.after)
                continue
            allow = set(policy.allow)
            for field in change.fields:
                (allow.add if field.after else allow.discard)(field.protocol)
            policies[change.policy.casefold()] = dataclasses.replace(policy, allow=frozenset(allow))
        elif isinstance(change, PolicyDelete):
            existing(change.policy)
            del policies[change.policy.casefold()]
        elif isinstance(change, DefaultChange):
            default = None if change.after is None else existing(change.after).name
        elif isinstance(change, UserChange):
            if change.user_id not in known_users:
                raise ValueError(f'user "{change.user}" ({change.user_id}) is not in the snapshot')
            # Exchange stores a link, so Get-User shows the policy as the tenant spells it.
            user_policy[change.user_id] = (
                None if change.after is None else existing(change.after).name
            )
        else:  # pragma: no cover - the Change union is closed
            raise ValueError(f"unknown change {change!r}")

    users = snapshot.users
    if user_policy:
        users = tuple(
            dataclasses.replace(u, policy=user_policy[u.id]) if u.id in user_policy else u
            for u in users
        )
    return dataclasses.replace(
        snapshot,
        policies=tuple(sorted(policies.values(), key=lambda p: (p.name.casefold(), p.name))),
        default_policy=default,
        users=users,
    )
