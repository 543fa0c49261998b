"""Plans the renderer tests draw: planned from model scenarios, or built by hand."""

from __future__ import annotations

import datetime as dt

from reconciler.model import (
    DefaultChange,
    FieldChange,
    Guard,
    Limit,
    MatchSpec,
    Plan,
    PolicyDelete,
    PolicyUpdate,
    Safety,
    UserChange,
)
from reconciler.plan import make_plan as _make_plan
from tests.plan.scenarios import ALL, contoso, desired, policy, rule, snapshot, spec, user

# Golden files hold the date a plan is made for (and it is in the fingerprint): pinned.
AS_OF = dt.date(2026, 12, 1)


def make_plan(state, tenant):  # type: ignore[no-untyped-def]
    return _make_plan(state, tenant, AS_OF)


def contoso_plan() -> Plan:
    return make_plan(*contoso())


def no_changes_plan() -> Plan:
    state, tenant = contoso()
    from reconciler.plan import apply_changes_in_memory

    return make_plan(state, apply_changes_in_memory(tenant, make_plan(state, tenant).changes))


def guarded_plan() -> Plan:
    """45 new users, the default cleared, a switch turned on: guards and weakening."""
    state = desired(
        [spec("Block"), spec("Relay", "smtp", "pop")],
        [
            rule("devices", "Relay", MatchSpec(upn=("dev-*",))),
            rule("everyone", "Block", ALL),
        ],
        manage_default=True,
        default=None,
        safety=Safety(max_user_changes=Limit(25), max_policy_deletes=Limit(0)),
        prune=True,
    )
    users = [user(f"new{i:02}@contoso.com") for i in range(45)]
    users += [user(f"dev-{i}@contoso.com", "Block") for i in range(3)]
    users += [user("ok@contoso.com", "Block")]
    tenant = snapshot(
        [policy("Block"), policy("Relay", "smtp"), policy("Unused 2019")],
        users,
        default="Block",
    )
    return make_plan(state, tenant)


HOSTILE_POLICY = 'Evil | <script>alert(1)</script> ```\n+ create policy "fake"\u202e'
HOSTILE_UPN = "@admins <img src=x>|`x`@contoso.com"


def hostile_plan() -> Plan:
    """Tenant-side names can hold anything: they must not break tables, fences or lines."""
    return Plan(
        tenant="contoso.onmicrosoft.com",
        fingerprint="sha256:" + "0" * 64,
        changes=(
            PolicyUpdate(HOSTILE_POLICY, (FieldChange("smtp", True, False),), affected_users=1),
            DefaultChange(HOSTILE_POLICY, "Block", affected_users=0),
            UserChange("user_assign", HOSTILE_UPN, "id-1", HOSTILE_POLICY, "Block", "everyone"),
            PolicyDelete("*bold* [link](http://x) ~~strike~~"),
        ),
        warnings=(f'1 user hold policy "{HOSTILE_POLICY}", which does not exist: {HOSTILE_UPN}',),
        guards=(Guard("max_policy_deletes", "1 policy deletes exceed | <b>x</b>", 1, 0),),
        inputs={"config": "sha256:" + "1" * 64},
    )


SCENARIOS = {
    "contoso": contoso_plan,
    "no_changes": no_changes_plan,
    "guarded": guarded_plan,
    "hostile": hostile_plan,
}
