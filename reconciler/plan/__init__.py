"""Planning: rules to desired assignments, the diff, guards, fingerprint.

The public face (names fixed; other parts call these):
- `snapshot_needs(desired)`: which user attributes and groups the rules reference;
- `make_plan(desired, snapshot)`: the pure diff, as a `Plan` (raises PlanError);
- `apply_changes_in_memory(snapshot, changes)`: the tenant as it will be after the changes.
"""

from reconciler.plan.memory import apply_changes_in_memory
from reconciler.plan.needs import snapshot_needs
from reconciler.plan.planner import make_plan

__all__ = ["apply_changes_in_memory", "make_plan", "snapshot_needs"]
