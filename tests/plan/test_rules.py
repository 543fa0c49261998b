"""Rule evaluation: every match key, except, first match wins, case-insensitivity, groups."""

from __future__ import annotations

import pytest

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
