"""The fingerprint: deterministic, blind to read order and layout, and says which input moved."""

from __future__ import annotations

import dataclasses

from reconciler.model import MatchSpec
from reconciler.plan import make_plan
from reconciler.plan.fingerprint import INPUT_NAMES, moved_inputs
from tests.plan.scenarios import contoso, policy, user


def test_same_inputs_same_fingerprint_whatever_the_read_order() -> None:
    state, tenant = contoso()
    plan = make_plan(state, tenant)
    shuffled = dataclasses.replace(tenant, users=tenant.users[::-1], policies=tenant.policies[::-1])
    again = make_plan(state, shuffled)
    assert again.fingerprint == plan.fingerprint
    assert again.inputs == plan.inputs
    assert list(plan.inputs) == list(INPUT_NAMES)
    assert plan.fingerprint.startswith("sha256:") and len(plan.fingerprint) == 71


def test_each_input_moves_its_own_digest() -> None:
    state, tenant = contoso()
    base = make_plan(state, tenant)
    variants = {
        "config": (dataclasses.replace(state, prune_policies=True), tenant),
        "policies": (
            state,
            dataclasses.replace(tenant, policies=(*tenant.policies, policy("New"))),
        ),
        "default": (state, dataclasses.replace(tenant, default_policy="Strict")),
        "users": (state, dataclasses.replace(tenant, users=(*tenant.users, user("z@contoso.com")))),
        "groups": (
            state,
            dataclasses.replace(
                tenant, groups={**tenant.groups, "smtp exceptions": frozenset({"id-x"})}
            ),
        ),
    }
    for name, (s, t) in variants.items():
        moved = make_plan(s, t)
        assert moved_inputs(base.inputs, moved.inputs) == [name], name
        assert moved.fingerprint != base.fingerprint


def test_fields_the_plan_does_not_read_do_not_move_it() -> None:
    state, tenant = contoso()
    base = make_plan(state, tenant)
    # rules reference `department`; `title` is not read, nor are display names or unused groups
    noisy = dataclasses.replace(
        tenant,
        users=tuple(dataclasses.replace(u, title="CEO", display_name="X") for u in tenant.users),
        groups={**tenant.groups, "unrelated": frozenset({"id-carol"})},
    )
    assert make_plan(state, noisy).fingerprint == base.fingerprint
    # but a referenced attribute does
    touched = dataclasses.replace(
        tenant,
        users=tuple(dataclasses.replace(u, department="Contractors") for u in tenant.users),
    )
    assert moved_inputs(base.inputs, make_plan(state, touched).inputs) == ["users"]


def test_rule_order_is_part_of_the_config_but_policy_order_is_not() -> None:
    state, tenant = contoso()
    base = make_plan(state, tenant)
    policies_reordered = dataclasses.replace(state, policies=state.policies[::-1])
    assert make_plan(policies_reordered, tenant).inputs["config"] == base.inputs["config"]
    rules = state.assignments.rules
    reordered = dataclasses.replace(
        state, assignments=dataclasses.replace(state.assignments, rules=rules[::-1])
    )
    assert make_plan(reordered, tenant).inputs["config"] != base.inputs["config"]
    other_match = dataclasses.replace(
        state,
        assignments=dataclasses.replace(
            state.assignments,
            rules=(dataclasses.replace(rules[0], match=MatchSpec(users=("x@y.z",))), *rules[1:]),
        ),
    )
    assert make_plan(other_match, tenant).inputs["config"] != base.inputs["config"]
