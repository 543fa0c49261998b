"""The OPATH subset (reconciler/emulator/filters.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.emulator.filters import PrefixIndex, compile_filter, compile_indexed, field_getters
from reconciler.emulator.wire import CmdletError

GETTERS = field_getters(["Department", "City", "AuthenticationPolicy"])
ANN = {"Department": "Sales", "City": "Berlin", "AuthenticationPolicy": "CN=P,CN=Auth Policies"}
BOB = {"Department": "Legal", "City": "Paris", "AuthenticationPolicy": None}


def _match(text: str) -> list[str]:
    predicate = compile_filter(text, GETTERS)
    return [name for name, rec in (("ann", ANN), ("bob", BOB)) if predicate(rec)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Department -eq 'sales'", ["ann"]),
        ('department -EQ "Legal"', ["bob"]),
        ("Department -ne 'Sales'", ["bob"]),
        ("City -like 'Ber*'", ["ann"]),
        ("City -notlike 'Ber*'", ["bob"]),
        ("AuthenticationPolicy -eq $null", ["bob"]),
        ("AuthenticationPolicy -ne $null", ["ann"]),
        ("AuthenticationPolicy -eq 'CN=P,CN=Auth*'", ["ann"]),
        ("Department -eq 'Sales' -and City -eq 'Paris'", []),
        ("Department -eq 'Sales' -or City -eq 'Paris'", ["ann", "bob"]),
        ("-not (Department -eq 'Sales')", ["bob"]),
        ("{Department -eq 'Legal'}", ["bob"]),
        ("Department -eq 'it''s' -or City -eq Paris", ["bob"]),
    ],
)
def test_filters(text: str, expected: list[str]) -> None:
    assert _match(text) == expected


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("Department -eq", 14),
        ("Department 'Sales'", 11),
        ("(Department -eq 'x'", 19),
        ("Department -eq 'x' City", 19),
        ("", 0),
        ("Department -eq 'x' ~", 19),
    ],
)
def test_syntax_errors_name_position(text: str, position: int) -> None:
    with pytest.raises(CmdletError) as caught:
        compile_filter(text, GETTERS)
    assert caught.value.text.endswith(f'"{text}" at position {position}."')


def test_unknown_property() -> None:
    with pytest.raises(CmdletError, match="'Shoe' is not a recognized filterable property"):
        compile_filter("Shoe -eq 1", GETTERS)


# ------------------------------------------------------------- the UPN prefix index

_UPN_GETTERS = field_getters(["UserPrincipalName", "Department"])
_PREFIXES = st.text(alphabet="abAB0._-'", max_size=3)


def _upn_filter() -> st.SearchStrategy[str]:
    leaf = _PREFIXES.map(lambda p: "UserPrincipalName -like '" + p.replace("'", "''") + "*'")
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["-and", "-or"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda t: f"-not ({t})"),
        ),
        max_leaves=12,
    )


@settings(max_examples=300, deadline=None)
@given(
    upns=st.lists(st.text(alphabet="abAB0._-'", min_size=0, max_size=4), max_size=40),
    text=_upn_filter(),
)
def test_the_prefix_index_selects_what_the_filter_selects_in_the_same_order(
    upns: list[str], text: str
) -> None:
    records = [{"UserPrincipalName": f"{u}@contoso.com", "Department": None} for u in upns]
    predicate, plan = compile_indexed(text, _UPN_GETTERS)
    assert plan is not None
    index = PrefixIndex(records, lambda r: r["UserPrincipalName"])
    assert index.select(plan(index)) == [r for r in records if predicate(r)]


@pytest.mark.parametrize(
    "text",
    [
        "UserPrincipalName -like 'a*b*'",  # a wildcard inside: not a prefix
        "UserPrincipalName -like 'a?*'",
        "UserPrincipalName -eq 'a*'",
        "UserPrincipalName -notlike 'a*'",
        "UserPrincipalName -like 'a*' -and Department -eq 'Sales'",
        "UserPrincipalName -like 'abc'",
    ],
)
def test_filters_that_are_not_only_upn_prefixes_are_scanned(text: str) -> None:
    assert compile_indexed(text, _UPN_GETTERS)[1] is None


def test_the_emulator_answers_a_partition_from_the_index_and_drops_it_on_change() -> None:
    from reconciler.emulator.state import TenantState
    from reconciler.emulator.synthetic import generate_tenant

    state = TenantState(generate_tenant(300, 7))
    index = state.upn_index()
    assert state.upn_index() is index  # kept while nothing changes
    getters = field_getters(["UserPrincipalName"])
    predicate, plan = compile_indexed("-not (UserPrincipalName -like 'a*')", getters)
    assert plan is not None
    assert index.select(plan(index)) == [u for u in state.users if predicate(u)]
    state.remove_user(state.users[0]["UserPrincipalName"])
    assert state.upn_index() is not index
