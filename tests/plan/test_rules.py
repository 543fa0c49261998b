"""Rule evaluation: every match key, except, first match wins, case-insensitivity, groups."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model import MatchSpec
from reconciler.plan.rules import UserIndex, evaluate_rules, spec_matches_user
from tests.plan.scenarios import ALL, rule, user

USERS = (
    user("ann@contoso.com", department="Sales", city="Oslo", country="NO", company="Contoso"),
    user("Bob@Contoso.com", department="sales", title="Engineer", office="HQ", uid="id-bob"),
    user("scanner-01@contoso.com", recipient_type="SharedMailbox"),
    user("scanner-02@fabrikam.com", recipient_type="UserMailbox"),
    user("carol@fabrikam.com", uid="id-carol"),
)
GROUPS = {"smtp exceptions": frozenset({"id-carol", "id-bob", "id-not-in-tenant"})}


def matched(spec: MatchSpec) -> list[str]:
    index = UserIndex(USERS, GROUPS)
    return sorted(USERS[i].upn for i in index.positions_matching(spec))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ALL, sorted(u.upn for u in USERS)),
        (MatchSpec(users=("BOB@contoso.COM",)), ["Bob@Contoso.com"]),
        (MatchSpec(upn=("scanner-*@contoso.com",)), ["scanner-01@contoso.com"]),
        (MatchSpec(upn=("SCANNER-??@*",)), ["scanner-01@contoso.com", "scanner-02@fabrikam.com"]),
        (MatchSpec(upn=("scanner-0[2-9]@*",)), ["scanner-02@fabrikam.com"]),
        (MatchSpec(upn=("carol@fabrikam.com",)), ["carol@fabrikam.com"]),  # no glob: exact
        (MatchSpec(domain=("FABRIKAM.com",)), ["carol@fabrikam.com", "scanner-02@fabrikam.com"]),
        (MatchSpec(department=("Sales",)), ["Bob@Contoso.com", "ann@contoso.com"]),
        (MatchSpec(company=("contoso",)), ["ann@contoso.com"]),
        (MatchSpec(office=("hq",)), ["Bob@Contoso.com"]),
        (MatchSpec(title=("engineer",)), ["Bob@Contoso.com"]),
        (MatchSpec(city=("OSLO",)), ["ann@contoso.com"]),
        (MatchSpec(country=("no",)), ["ann@contoso.com"]),
        (MatchSpec(recipient_type=("sharedmailbox",)), ["scanner-01@contoso.com"]),
        (MatchSpec(member_of=("SMTP Exceptions",)), ["Bob@Contoso.com", "carol@fabrikam.com"]),
        # AND across keys, OR within one key's list
        (MatchSpec(department=("sales",), city=("oslo",)), ["ann@contoso.com"]),
        (
            MatchSpec(upn=("scanner-*",), recipient_type=("UserMailbox", "RoomMailbox")),
            ["scanner-02@fabrikam.com"],
        ),
        (
            MatchSpec(users=("ann@contoso.com", "carol@fabrikam.com")),
            ["ann@contoso.com", "carol@fabrikam.com"],
        ),
        # a spec that constrains nothing and is not `all` matches no one
        (MatchSpec(), []),
        # an attribute the user does not have never matches
        (MatchSpec(title=("",)), []),
    ],
)
def test_each_match_key(spec: MatchSpec, expected: list[str]) -> None:
    assert matched(spec) == expected
    # the one-user-at-a-time oracle agrees with the compiled matcher
    assert sorted(u.upn for u in USERS if spec_matches_user(spec, u, GROUPS)) == expected


def test_first_match_wins_and_except_lets_users_fall_through() -> None:
    rules = [
        rule("sales", "A", MatchSpec(department=("sales",)), MatchSpec(users=("ann@contoso.com",))),
        rule("contoso", "B", MatchSpec(domain=("contoso.com",))),
        rule("everyone", "C", ALL, MatchSpec(member_of=("smtp exceptions",))),
    ]
    result = evaluate_rules(rules, UserIndex(USERS, GROUPS))
    assert result.rule_of_user == [1, 0, 1, 2, -1]
    assert result.matched_counts == (1, 3, 3)
    assert result.governed_counts == (1, 2, 1)
    assert result.missing_groups == frozenset()


def test_a_missing_group_matches_no_one_and_is_reported() -> None:
    rules = [rule("x", "A", MatchSpec(member_of=("No Such Group", "smtp exceptions")))]
    result = evaluate_rules(rules, UserIndex(USERS, GROUPS))
    assert result.rule_of_user == [-1, 0, -1, -1, 0]
    assert result.missing_groups == frozenset({"No Such Group"})


def test_glob_metacharacters_of_regex_are_literal() -> None:
    users = (user("a.b+c@x.com"), user("aXb+c@x.com"), user("a.bbc@x.com"))
    index = UserIndex(users, {})
    found = index.positions_matching(MatchSpec(upn=("a.b+c@*",)))
    assert found == {0}


_KEYS = ("users", "upn", "domain", "department", "recipient_type", "member_of")


@st.composite
def _world(draw: st.DrawFn) -> tuple[list, dict, MatchSpec]:
    # Few departments, or more than 256 (so both the coded path and the per-user test run),
    # UPNs with and without "@", and casing that differs between the users and the spec.
    many = draw(st.booleans())
    departments = [f"Dept{i}" for i in range(300)] if many else ["Sales", "sales", "IT", ""]
    count = draw(st.integers(0, 320 if many else 30))
    users = [
        user(
            draw(
                st.sampled_from(["a{i}@Contoso.com", "b{i}@fabrikam.com", "nodomain", "c{i}@"])
            ).format(i=i),
            department=draw(st.sampled_from([None, *departments])),
            recipient_type=draw(st.sampled_from(["UserMailbox", "SharedMailbox", "MailUser"])),
            uid=f"id-{i}",
        )
        for i in range(count)
    ]
    groups = {"g": frozenset(f"id-{i}" for i in draw(st.sets(st.integers(0, max(count, 1)))))}
    values = {
        "users": st.sampled_from(["A1@contoso.com", "NoDomain", "x@y"]),
        "upn": st.sampled_from(["a*@contoso.com", "*@FABRIKAM.com", "nodomain*", "c?@"]),
        "domain": st.sampled_from(["contoso.com", "Fabrikam.com", "", "nodomain"]),
        "department": st.sampled_from(["SALES", "it", "Dept7", "Dept299", ""]),
        "recipient_type": st.sampled_from(["usermailbox", "MailUser", "Room"]),
        "member_of": st.sampled_from(["g", "missing"]),
    }
    keys = draw(st.sets(st.sampled_from(_KEYS), min_size=1, max_size=3))
    spec = MatchSpec(**{k: tuple(draw(st.lists(values[k], min_size=1, max_size=2))) for k in keys})
    return users, groups, spec


@settings(max_examples=150, deadline=None)
@given(_world())
def test_the_index_matches_exactly_whom_the_slow_oracle_matches(world) -> None:
    users, groups, spec = world
    index = UserIndex(users, groups)
    expected = {i for i, u in enumerate(users) if spec_matches_user(spec, u, groups)}
    assert index.positions_matching(spec) == expected
    evaluation = evaluate_rules([rule("r", "P", spec), rule("all", "Q", ALL)], index)
    assert evaluation.rule_of_user == [0 if i in expected else 1 for i in range(len(users))]
    assert evaluation.matched_counts == (len(expected), len(users))
    assert evaluation.governed_counts == (len(expected), len(users) - len(expected))


def test_a_upn_without_at_has_no_domain_and_one_ending_in_at_an_empty_one() -> None:
    users = (user("nodomain"), user("x@"), user("a@nodomain"))
    index = UserIndex(users, {})
    for value, expected in (("nodomain", {2}), ("", {1})):
        spec = MatchSpec(domain=(value,))
        assert index.positions_matching(spec) == expected
        assert {i for i, u in enumerate(users) if spec_matches_user(spec, u, {})} == expected
