"""--allow-replace shows each policy update as a replace with its holders and the default."""

from __future__ import annotations

from reconciler.apply.replace import plan_with_replaces
from reconciler.model import (
    FieldChange,
    Plan,
    PolicyReplace,
    PolicyUpdate,
    SnapshotNeeds,
    UserChange,
    holding_name,
)
from tests.fakes import FakeTenant


def test_updates_become_replaces_with_holders_not_moved_by_the_plan() -> None:
    tenant = FakeTenant.with_users(
        4, policy="Block", policies={"Block": ["smtp", "pop"]}, default_policy="Block"
    )
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    moved = UserChange("user_assign", "user3@contoso.com", "u-3", "Block", "Other", "devices")
    plan = Plan(
        tenant=tenant.name,
        fingerprint="sha256:f",
        changes=(PolicyUpdate("Block", (FieldChange("smtp", True, False),)), moved),
    )
    shown = plan_with_replaces(plan, snapshot)

    assert shown.changes == (
        PolicyReplace(
            policy="Block",
            fields=(FieldChange("smtp", True, False),),
            after=frozenset({"pop"}),
            holders=("u-0", "u-1", "u-2"),
            is_default=True,
            moved_holders=("u-3",),
        ),
        moved,
    )
    assert shown.fingerprint == plan.fingerprint
    assert shown.warnings == (
        "policy 'Block' will be removed and created again (--allow-replace): its 4 user(s) and "
        f"the org default wait on the holding policy '{holding_name('Block')}' (the same "
        "protection) and are pointed back at the new policy right after; the holding policy is "
        "then removed; 1 of them get their own change later",
    )
