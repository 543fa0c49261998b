"""The OPATH subset (reconciler/emulator/filters.py)."""

from __future__ import annotations

import pytest

from reconciler.emulator.filters import compile_filter, field_getters
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
