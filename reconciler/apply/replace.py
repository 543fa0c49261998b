"""Turn a plan's policy updates into shown replaces (`--allow-replace`).

Exchange has failed Set-AuthenticationPolicy with "Object reference not set to an instance of
an object" (Microsoft365DSC#4819). The way around it is to remove the policy and create it again
with the same name and switches. That is a bigger change than an update: the new object has a
new identity, so every user that held the old one and the org default must be pointed at it
again. The plan therefore shows it as its own action, with those holders, before anything runs.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.model import (
    DefaultChange,
    Plan,
    PolicyReplace,
    PolicyUpdate,
    ReplaceResume,
    TenantSnapshot,
    UserChange,
    holding_name,
)


def plan_with_replaces(plan: Plan, snapshot: TenantSnapshot) -> Plan:
    """`plan` with every policy_update shown as a policy_replace (same place in the order).

    Holders are the users that hold the policy directly now, minus users the plan moves
    anyway (their own change sets their policy, so reassigning them would be a wasted write).
    The default is restored only if it names the policy now and the plan does not move it.
    """
    moved_users = {c.user_id for c in plan.changes if isinstance(c, UserChange)}
    default_moves = any(isinstance(c, DefaultChange) for c in plan.changes)
    changes = []
    warnings = list(plan.warnings)
    for change in plan.changes:
        if not isinstance(change, PolicyUpdate):
            changes.append(change)
            continue
        live = snapshot.policy(change.policy)
        allow = set(live.allow if live is not None else ())
        for field in change.fields:
            (allow.add if field.after else allow.discard)(field.protocol)
        folded = change.policy.casefold()
        # An unfinished earlier replace's resume puts its users (and the default) back on the
        # policy first: they hold it by the time this replace runs.
        resumed = [
            c
            for c in plan.changes
            if isinstance(c, ReplaceResume) and c.policy.casefold() == folded
        ]
        current = sorted(
            {u.id for u in snapshot.users if u.policy is not None and u.policy.casefold() == folded}
            | {uid for c in resumed for uid in c.holders}
        )
        holders = tuple(u for u in current if u not in moved_users)
        moved_holders = tuple(u for u in current if u in moved_users)
        names_default = (
            snapshot.default_policy is not None and snapshot.default_policy.casefold() == folded
        ) or any(c.default for c in resumed)
        is_default = names_default and not default_moves
        changes.append(
            PolicyReplace(
                policy=change.policy,
                fields=change.fields,
                after=frozenset(allow),
                holders=holders,
                is_default=is_default,
                moved_holders=moved_holders,
                default_moves=names_default and default_moves,
                weakens=change.weakens,
                evidence=change.evidence,
            )
        )
        everyone = len(holders) + len(moved_holders)
        warnings.append(
            f"policy '{change.policy}' will be removed and created again (--allow-replace): "
            f"its {everyone} user(s){' and the org default' if names_default else ''} wait on "
            f"the holding policy '{holding_name(change.policy)}' (the same protection) and "
            "are pointed back at the new policy right after; the holding policy is then removed"
            + (
                f"; {len(moved_holders)} of them get their own change later"
                if moved_holders
                else ""
            )
        )
    return replace(plan, changes=tuple(changes), warnings=tuple(warnings))
