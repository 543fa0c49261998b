"""Property tests: a satisfied tenant plans to nothing; apply-in-memory then plan gives nothing;
the JSON is byte-identical across runs and read orders, and reads back to the same plan."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reconciler.errors import PlanError
from reconciler.model import (
    Assignments,
    DesiredState,
    MatchSpec,
    PolicySpec,
    Rule,
    TenantPolicy,
    TenantSnapshot,
    TenantUser,
    UserChange,
)
from reconciler.plan import apply_changes_in_memory, make_plan
from reconciler.plan.rules import spec_matches_user
from reconciler.render import plan_from_json, plan_to_json
from reconciler.render.jsonplan import _change_json, _dumps, change_to_dict

POLICY_POOL = ("Block", "Relay", "Open", "Legacy", "Extra")
PROTOCOLS = ("smtp", "pop", "imap", "web_services")
LOCALS = ("a", "b", "scanner-1", "scanner-22", "Ünïcode", "c.d")
DOMAINS = ("x.com", "Y.org")
GLOBS = ("scanner-*", "*@x.com", "?@y.org", "[ab]@*", "c.d@*")
GROUPS = ("G1", "G2", "Missing")

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def recase(draw, name: str) -> str:
    return draw(st.sampled_from([name, name.lower(), name.upper()]))


@st.composite
def users_and_groups(
    draw, policy_names: list[str]
) -> tuple[list[TenantUser], dict[str, frozenset[str]]]:
    upns = draw(
        st.lists(
            st.tuples(st.sampled_from(LOCALS), st.sampled_from(DOMAINS)),
            unique_by=lambda t: (t[0].casefold(), t[1].casefold()),
            max_size=10,
        )
    )
    users = []
    for i, (local, domain) in enumerate(upns):
        held = draw(st.sampled_from([None, "Gone", *policy_names])) if policy_names else None
        users.append(
            TenantUser(
                id=f"id-{i}",
                upn=f"{recase(draw, local)}@{domain}",
                identity=local,
                recipient_type=draw(st.sampled_from(["UserMailbox", "SharedMailbox"])),
                policy=None if held is None else recase(draw, held),
                department=draw(st.sampled_from([None, "Sales", "IT"])),
            )
        )
    ids = [u.id for u in users]
    groups = {
        name.casefold(): frozenset(draw(st.lists(st.sampled_from(ids), unique=True)) if ids else ())
        for name in ("G1", "G2")
    }
    return users, groups


@st.composite
def match_specs(draw, upns: list[str]) -> MatchSpec:
    if draw(st.integers(0, 4)) == 0:
        return MatchSpec(match_all=True)
    keys = draw(
        st.lists(
            st.sampled_from(
                ["users", "upn", "domain", "department", "recipient_type", "member_of"]
            ),
            min_size=1,
            max_size=2,
            unique=True,
        )
    )
    values = {
        "users": lambda: [recase(draw, u) for u in upns[:2]] or ["nobody@x.com"],
        "upn": lambda: draw(st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2)),
        "domain": lambda: draw(
            st.lists(st.sampled_from(["X.COM", "y.org"]), min_size=1, max_size=2)
        ),
        "department": lambda: draw(
            st.lists(st.sampled_from(["sales", "IT"]), min_size=1, max_size=2)
        ),
        "recipient_type": lambda: [draw(st.sampled_from(["usermailbox", "SharedMailbox"]))],
        "member_of": lambda: draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2)),
    }
    return MatchSpec(**{k: tuple(values[k]()) for k in keys})


@st.composite
def worlds(draw) -> tuple[DesiredState, TenantSnapshot]:
    """A desired state and an arbitrary tenant over the same small universe of names."""
    declared = draw(st.lists(st.sampled_from(POLICY_POOL[:4]), min_size=1, max_size=3, unique=True))
    specs = tuple(
        PolicySpec(
            recase(draw, n), frozenset(draw(st.lists(st.sampled_from(PROTOCOLS), unique=True)))
        )
        for n in declared
    )
    tenant_names = draw(st.lists(st.sampled_from(POLICY_POOL), unique=True))
    policies = tuple(
        TenantPolicy(
            recase(draw, n), frozenset(draw(st.lists(st.sampled_from(PROTOCOLS), unique=True)))
        )
        for n in tenant_names
    )
    users, groups = draw(users_and_groups(tenant_names))
    upns = [u.upn for u in users]
    rules = tuple(
        Rule(
            name=f"rule-{i}",
            policy=draw(st.sampled_from([None, *[s.name for s in specs]])),
            match=draw(match_specs(upns)),
            except_=draw(st.none() | match_specs(upns)),
        )
        for i in range(draw(st.integers(0, 4)))
    )
    undeclared = [n for n in POLICY_POOL if n not in declared]
    manage_default = draw(st.booleans())
    state = DesiredState(
        version=1,
        tenant=None,
        policies=specs,
        remove_policies=tuple(draw(st.lists(st.sampled_from(undeclared), unique=True))),
        prune_policies=draw(st.booleans()),
        manage_default=manage_default,
        default_policy=draw(st.sampled_from([None, *[s.name for s in specs]]))
        if manage_default
        else None,
        assignments=Assignments(unmatched=draw(st.sampled_from(["ignore", "clear"])), rules=rules),
    )
    tenant = TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=policies,
        default_policy=draw(st.sampled_from([None, *[p.name for p in policies]])),
        users=tuple(users),
        groups=groups,
    )
    return state, tenant


def planned(state: DesiredState, tenant: TenantSnapshot):
    try:
        return make_plan(state, tenant)
    except PlanError:
        assume(False)
        raise  # unreachable


def oracle_policy(state: DesiredState, user: TenantUser, groups) -> tuple[bool, str | None]:
    """The naive reading of DESIGN.md: (governed?, direct policy the user should have)."""
    for rule in state.assignments.rules:
        if spec_matches_user(rule.match, user, groups) and not (
            rule.except_ is not None and spec_matches_user(rule.except_, user, groups)
        ):
            return True, rule.policy
    return state.assignments.unmatched == "clear", None


@SETTINGS
@given(worlds(), st.data())
def test_a_tenant_that_already_satisfies_the_desired_state_plans_to_nothing(world, data) -> None:
    state, tenant = world
    # Build the satisfying tenant independently of the planner: declared policies as declared
    # (spelled in any case), extras only where neither prune nor remove_policies deletes them.
    removed = {n.casefold() for n in state.remove_policies}
    policies = [
        TenantPolicy(data.draw(st.sampled_from([s.name, s.name.upper()])), s.allow)
        for s in state.policies
    ]
    declared = {s.name.casefold() for s in state.policies}
    if not state.prune_policies:
        policies += [p for p in tenant.policies if p.name.casefold() not in declared | removed]
    keepable = [p.name for p in policies]
    default = (
        state.default_policy
        if state.manage_default
        else data.draw(st.sampled_from([None, *keepable]))
    )
    users = []
    for user in tenant.users:
        governed, policy = oracle_policy(state, user, tenant.groups)
        if not governed:
            policy = data.draw(st.sampled_from([None, *keepable]))
        users.append(dataclasses.replace(user, policy=policy))
    satisfied = dataclasses.replace(
        tenant, policies=tuple(policies), default_policy=default, users=tuple(users)
    )
    assert make_plan(state, satisfied).changes == ()


@SETTINGS
@given(worlds())
def test_applying_a_plan_in_memory_then_planning_again_gives_nothing(world) -> None:
    state, tenant = world
    plan = planned(state, tenant)
    after = apply_changes_in_memory(tenant, plan.changes)
    assert make_plan(state, after).changes == ()


@SETTINGS
@given(worlds(), st.randoms(use_true_random=False))
def test_plan_json_is_identical_across_runs_and_read_orders_and_reads_back(world, rnd) -> None:
    state, tenant = world
    plan = planned(state, tenant)
    text = plan_to_json(plan)
    users, policies = list(tenant.users), list(tenant.policies)
    rnd.shuffle(users)
    rnd.shuffle(policies)
    reordered = dataclasses.replace(tenant, users=tuple(users), policies=tuple(policies))
    assert plan_to_json(make_plan(state, reordered)) == text
    assert plan_from_json(text) == plan
    assert json.loads(text)["summary"]["total"] == len(plan.changes)


@settings(max_examples=200, deadline=None)
@given(
    st.text(),
    st.text(),
    st.none() | st.text(),
    st.none() | st.text(),
    st.text(),
    st.booleans(),
)
def test_the_fast_json_path_writes_what_json_dumps_writes(upn, uid, before, after, rule, weakens):
    change = UserChange(
        kind="user_assign" if after is not None else "user_clear",
        user=upn,
        user_id=uid,
        before=before,
        after=after,
        rule=rule,
        weakens=weakens,
    )
    defaults = (before, after)  # any two names (or none) stand for the default before/after
    assert _change_json(change, defaults) == _dumps(change_to_dict(change, defaults))
    with_smtp = dataclasses.replace(change, basic_smtp_before="blocked", basic_smtp_after="allowed")
    assert _change_json(with_smtp, defaults) == _dumps(change_to_dict(with_smtp, defaults))
