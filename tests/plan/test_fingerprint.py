"""The fingerprint: deterministic, blind to read order and layout, and says which input moved."""

from __future__ import annotations

import dataclasses
from random import Random

from hypothesis import assume, given
from hypothesis import strategies as st

from reconciler.model import MatchSpec, TenantUser
from reconciler.plan import make_plan
from reconciler.plan.fingerprint import INPUT_NAMES, _users_digest, moved_inputs
from tests.plan.scenarios import contoso, policy, user


def test_same_inputs_same_fingerprint_whatever_the_read_order() -> None:
    state, tenant = contoso()
    plan = make_plan(state, tenant)
    shuffled = dataclasses.replace(tenant, users=tenant.users[::-1], policies=tenant.policies[::-1])
    again = make_plan(state, shuffled)
    assert again.fingerprint == plan.fingerprint
    assert again.inputs == plan.inputs
    # smtp_org only when the file manages SMTP AUTH (Get-TransportConfig is read then).
    assert list(plan.inputs) == [n for n in INPUT_NAMES if n != "smtp_org"]
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


# Values chosen to trip a careless encoding: None against "" and "null", quotes, line breaks
# (the separator of the column text), and a value repeated enough to take the table path.
_TRICKY = st.sampled_from([None, "", "null", '"', "\n", "a\nb", "Sales", "sales", "Ü"])
_FIELDS = ("id", "upn", "recipient_type", "policy", "department")


@st.composite
def _users(draw: st.DrawFn) -> list[TenantUser]:
    count = draw(st.integers(0, 12))
    ids = draw(
        st.lists(st.sampled_from("abcdefghijklmnop"), min_size=count, max_size=count, unique=True)
    )
    upn = st.sampled_from(["a@x", "b@x", "c\n@x", "Ü@x", ""])
    return [
        TenantUser(
            id=i,
            upn=draw(upn),
            identity="-",
            recipient_type=draw(st.sampled_from(["UserMailbox", "MailUser", "a\nb"])),
            policy=draw(_TRICKY),
            department=draw(_TRICKY),
        )
        for i in ids
    ]


def _rows(users: list[TenantUser]) -> list[tuple[object, ...]]:
    return sorted((u.id, u.upn, u.recipient_type, u.policy, u.department) for u in users)


@given(_users(), _users(), st.randoms())
def test_users_digest_is_equal_exactly_when_the_users_are(
    a: list[TenantUser], b: list[TenantUser], rnd: Random
) -> None:
    shuffled = list(a)
    rnd.shuffle(shuffled)
    assert _users_digest(shuffled, _FIELDS) == _users_digest(a, _FIELDS)
    same = _rows(a) == _rows(b)
    assert (_users_digest(a, _FIELDS) == _users_digest(b, _FIELDS)) == same


@given(_users(), st.data())
def test_any_one_field_of_any_one_user_moves_the_users_digest(
    users: list[TenantUser], data: st.DataObject
) -> None:
    assume(users)
    index = data.draw(st.integers(0, len(users) - 1))
    field = data.draw(st.sampled_from(["upn", "recipient_type", "policy", "department"]))
    new = data.draw(_TRICKY.filter(lambda v: v != getattr(users[index], field)))
    if field in ("upn", "recipient_type") and new is None:
        new = "changed"
    changed = list(users)
    changed[index] = dataclasses.replace(users[index], **{field: new})
    assert _users_digest(changed, _FIELDS) != _users_digest(users, _FIELDS)
