"""Is a saved plan still the plan? Compare it with a fresh one and name what moved."""

from __future__ import annotations

from dataclasses import dataclass

from deepdiff import DeepDiff

from reconciler.apply.audit import change_key, change_to_dict, policy_key
from reconciler.model import (
    Change,
    DefaultChange,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    SmtpOrgChange,
    UserChange,
)

SHOW_USERS = 5


# Counts and lists a fresh read recomputes (users joined since, sign-ins since): not part of
# what was reviewed (evidence never makes a saved plan stale; its guard is recomputed).
_DERIVED = ("affected_users", "holders", "moved_holders", "weakens", "basic_smtp", "evidence")


def _essence(change: Change) -> object:
    """What was reviewed about a change: kind, object, before, after, rule, switches."""
    if isinstance(change, UserChange | MailboxSmtpChange):  # most of a big plan: a tuple
        return (change.kind, change.user_id, change.before, change.after, change.rule)
    data = change_to_dict(change)
    for name in _DERIVED:
        data.pop(name, None)
    return data


@dataclass(frozen=True, slots=True)
class SavedPlanCheck:
    """A saved plan against a fresh one (DESIGN.md "Saved plans").

    `reasons` non-empty: refuse, nothing is written. Otherwise `to_write` holds the fresh
    changes that are the saved ones, in execution order; `not_in_saved` the fresh changes the
    saved plan lacks (a user who joined since): not written, named, and left to the next plan.
    """

    reasons: list[str]
    to_write: tuple[Change, ...] = ()
    not_in_saved: tuple[Change, ...] = ()


def stale_reasons(saved: Plan, fresh: Plan) -> list[str]:
    """Why `saved` may not be applied now; empty when it may (see check_saved_plan)."""
    return check_saved_plan(saved, fresh).reasons


def check_saved_plan(saved: Plan, fresh: Plan) -> SavedPlanCheck:
    """Match every saved change to the fresh plan's change for the same object.

    Refused, naming what moved, when the tenant or the config differs, when a saved change is
    not in the fresh plan exactly as saved, or when a fresh change a saved one depends on is
    missing from the saved plan (users who must move off a policy it deletes; the create a
    saved assignment needs). Matched by key first, so 100,000 saved changes stay fast;
    deepdiff describes only the users that moved.
    """
    if saved.tenant.casefold() != fresh.tenant.casefold():
        return SavedPlanCheck(
            [f"the plan was made for tenant '{saved.tenant}', not '{fresh.tenant}'"]
        )
    reasons: list[str] = []
    if saved.inputs.get("config") != fresh.inputs.get("config"):
        if saved.config_file and fresh.config_file:
            reasons.append(
                f"the config differs: the plan was made from {saved.config_file}, this apply "
                f"read {fresh.config_file}, and they do not say the same"
            )
        else:
            reasons.append("config changed since the plan was made")

    fresh_by_key = {change_key(c): c for c in fresh.changes}
    saved_keys = set()
    moved: list[tuple[Change, Change | None]] = []
    for change in saved.changes:
        key = change_key(change)
        saved_keys.add(key)
        now = fresh_by_key.get(key)
        if now is None or _essence(now) != _essence(change):
            moved.append((change, now))
    reasons += _describe(moved, set(fresh_by_key))
    kept = [c for c in fresh.changes if change_key(c) in saved_keys]
    extra = tuple(c for c in fresh.changes if change_key(c) not in saved_keys)
    reasons += _missing_prerequisites(saved, extra)
    if reasons and moved and saved.as_of and fresh.as_of and saved.as_of != fresh.as_of:
        reasons.append(
            f"the plan was made for {saved.as_of}; apply always plans for today, {fresh.as_of} "
            "(a rule may have expired since)"
        )
    if reasons:
        return SavedPlanCheck(reasons)
    return SavedPlanCheck([], tuple(kept), extra)


def _describe(moved: list[tuple[Change, Change | None]], fresh_keys: set[str]) -> list[str]:
    """One reason per policy, the default, the org switch; one line for all users."""
    reasons: list[str] = []
    users: list[tuple[str, str]] = []
    for saved, now in moved:
        if isinstance(saved, UserChange | MailboxSmtpChange):
            what = _what_moved(
                saved, now if isinstance(now, UserChange | MailboxSmtpChange) else None
            )
            label = saved.user if isinstance(saved, UserChange) else f"{saved.user} (SMTP AUTH)"
            users.append((label, what))
        elif isinstance(saved, DefaultChange):
            now_default = now.before if isinstance(now, DefaultChange) else saved.after
            if saved.before != now_default:
                reasons.append(
                    f"the default changed from {_name(saved.before)} to {_name(now_default)}"
                )
            else:
                reasons.append("the default policy's planned change differs now")
        elif isinstance(saved, SmtpOrgChange):
            now_org = now.before if isinstance(now, SmtpOrgChange) else saved.after
            reasons.append(
                f"the organization's SMTP AUTH changed from {saved.before or 'unknown'} to "
                f"{now_org or 'unknown'} since the plan was made"
            )
        else:
            name = saved.policy
            if saved.kind == "policy_create" and now is None:
                reasons.append(f"policy '{name}' was created since the plan was made")
            elif (saved.kind == "policy_delete" and now is None) or (
                # The fresh plan creates it instead: it was deleted since.
                now is None and policy_key(name, "policy_create") in fresh_keys
            ):
                reasons.append(f"policy '{name}' was deleted since the plan was made")
            else:
                reasons.append(f"policy '{name}' switches changed")
    if users:
        users.sort(key=lambda item: item[0].casefold())
        first = ", ".join(f"{label} ({what})" for label, what in users[:SHOW_USERS])
        reasons.append(f"{len(users)} user(s) changed (first few: {first})")
    return list(dict.fromkeys(reasons))


def _missing_prerequisites(saved: Plan, extra: tuple[Change, ...]) -> list[str]:
    """Fresh changes, absent from the saved plan, that a saved change cannot go without."""
    reasons: list[str] = []
    doomed = {c.policy.casefold(): c.policy for c in saved.changes if isinstance(c, PolicyDelete)}
    for folded, name in sorted(doomed.items()):
        holders = [
            c
            for c in extra
            if isinstance(c, UserChange | DefaultChange) and (c.before or "").casefold() == folded
        ]
        if holders:
            first = ", ".join(
                c.user if isinstance(c, UserChange) else "the organization default"
                for c in holders[:SHOW_USERS]
            )
            reasons.append(
                f"the plan deletes policy '{name}', but {len(holders)} holder(s) of it that the "
                f"plan does not move hold it now (first few: {first})"
            )
    creates = {c.policy.casefold(): c.policy for c in extra if isinstance(c, PolicyCreate)}
    needed = {
        (c.after or "").casefold()
        for c in saved.changes
        if isinstance(c, UserChange | DefaultChange) and c.after is not None
    }
    for folded in sorted(set(creates) & needed):
        reasons.append(
            f"policy '{creates[folded]}' must be created again before the plan's assignments "
            "to it (it was deleted since the plan was made)"
        )
    return reasons


def _what_moved(
    saved: UserChange | MailboxSmtpChange | None, fresh: UserChange | MailboxSmtpChange | None
) -> str:
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


def _name(policy: str | None) -> str:
    return f"'{policy}'" if policy is not None else "none"
