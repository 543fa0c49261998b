"""Is a saved plan still the plan? Compare it with a fresh one and name what moved."""

from __future__ import annotations

from collections.abc import Iterable

from deepdiff import DeepDiff

from reconciler.apply.audit import change_to_dict
from reconciler.model import Change, DefaultChange, Plan, UserChange

SHOW_USERS = 5


def _policy_changes(changes: Iterable[Change]) -> dict[str, list[dict[str, object]]]:
    by_policy: dict[str, list[dict[str, object]]] = {}
    for change in changes:
        policy = getattr(change, "policy", None)
        if policy is not None:
            by_policy.setdefault(policy.casefold(), []).append(change_to_dict(change))
    return by_policy


def _policy_names(changes: Iterable[Change]) -> dict[str, str]:
    names: dict[str, str] = {}
    for change in changes:
        policy = getattr(change, "policy", None)
        if policy is not None:
            names[policy.casefold()] = policy
    return names


def _default_change(changes: Iterable[Change]) -> DefaultChange | None:
    return next((c for c in changes if isinstance(c, DefaultChange)), None)


def _user_changes(changes: Iterable[Change]) -> dict[str, UserChange]:
    return {c.user_id: c for c in changes if isinstance(c, UserChange)}


def stale_reasons(saved: Plan, fresh: Plan) -> list[str]:
    """Why `saved` is no longer what would be planned now; empty when it still is.

    Reasons name what moved: the tenant, the config, a policy's switches, the default, users.
    The fingerprint covers the inputs; the change lists are compared too, so a saved plan is
    refused whenever executing it would write something the fresh plan would not.
    """
    if saved.tenant.casefold() != fresh.tenant.casefold():
        return [f"the plan was made for tenant '{saved.tenant}', not '{fresh.tenant}'"]
    same_changes = [change_to_dict(c) for c in saved.changes] == [
        change_to_dict(c) for c in fresh.changes
    ]
    if saved.fingerprint == fresh.fingerprint and same_changes:
        return []

    reasons: list[str] = []
    moved_inputs = sorted(
        key
        for key in set(saved.inputs) | set(fresh.inputs)
        if saved.inputs.get(key) != fresh.inputs.get(key)
    )
    if "config" in moved_inputs:
        if saved.config_file and fresh.config_file:
            reasons.append(
                f"the config differs: the plan was made from {saved.config_file}, this apply "
                f"read {fresh.config_file}, and they do not say the same"
            )
        else:
            reasons.append("config changed since the plan was made")

    saved_policies, fresh_policies = _policy_changes(saved.changes), _policy_changes(fresh.changes)
    names = {**_policy_names(fresh.changes), **_policy_names(saved.changes)}
    for key in sorted(set(saved_policies) | set(fresh_policies)):
        was_list, now_list = saved_policies.get(key, []), fresh_policies.get(key, [])
        if was_list == now_list:
            continue
        was_kinds = {c["kind"] for c in was_list}
        now_kinds = {c["kind"] for c in now_list}
        if "policy_create" in was_kinds and "policy_create" not in now_kinds:
            reasons.append(f"policy '{names[key]}' was created since the plan was made")
        elif ("policy_create" in now_kinds and "policy_create" not in was_kinds) or (
            "policy_delete" in was_kinds and "policy_delete" not in now_kinds
        ):
            reasons.append(f"policy '{names[key]}' was deleted since the plan was made")
        else:
            reasons.append(f"policy '{names[key]}' switches changed")

    saved_default, fresh_default = _default_change(saved.changes), _default_change(fresh.changes)
    if saved_default != fresh_default:
        # A plan's default_change.before is the live default when it was made; with no
        # default change the live default already was the desired one (its `after`).
        then: str | None
        now: str | None
        if saved_default is not None:
            then = saved_default.before
            now = fresh_default.before if fresh_default else saved_default.after
        else:
            assert fresh_default is not None
            then, now = fresh_default.after, fresh_default.before
        if then != now:
            reasons.append(f"the default changed from {_name(then)} to {_name(now)}")
        elif "config" not in moved_inputs:
            reasons.append("the default policy's planned change differs now")

    saved_users, fresh_users = _user_changes(saved.changes), _user_changes(fresh.changes)
    # Matched by user id first (cheap, for 100,000 changes); only the few named are described.
    moved = sorted(
        (
            (saved_users.get(uid) or fresh_users[uid]).user,
            uid,
        )
        for uid in set(saved_users) | set(fresh_users)
        if _user_key(saved_users.get(uid)) != _user_key(fresh_users.get(uid))
    )
    if moved:
        first = ", ".join(
            f"{upn} ({_what_moved(saved_users.get(uid), fresh_users.get(uid))})"
            for upn, uid in moved[:SHOW_USERS]
        )
        reasons.append(f"{len(moved)} user(s) changed (first few: {first})")

    if not reasons:
        labels = ", ".join(k for k in moved_inputs if k != "config") or "the tenant"
        reasons.append(f"the live tenant changed since the plan was made ({labels})")
    return reasons


def _what_moved(saved: UserChange | None, fresh: UserChange | None) -> str:
    """What differs between a user's saved and fresh change, in the plan JSON's words."""
    if fresh is None:
        return "the plan's change is no longer needed"
    if saved is None:
        return "needs a change the plan does not have"
    keys = ("kind", "before", "after", "rule")
    diff = DeepDiff(
        {k: getattr(saved, k) for k in keys}, {k: getattr(fresh, k) for k in keys}, verbose_level=1
    )
    parts = []
    for path, change in sorted(diff.get("values_changed", {}).items()):
        field = path.removeprefix("root['").removesuffix("']")
        parts.append(f"{field} {_name(change['old_value'])} -> {_name(change['new_value'])}")
    return ", ".join(parts) or "differs"


def _user_key(change: UserChange | None) -> tuple[object, ...] | None:
    if change is None:
        return None
    return (change.kind, change.before, change.after, change.rule)


def _name(policy: str | None) -> str:
    return f"'{policy}'" if policy is not None else "none"
