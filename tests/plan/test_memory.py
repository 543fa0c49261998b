"""apply_changes_in_memory: the tenant as apply will leave it."""

from __future__ import annotations

import pytest

from reconciler.model import (
    DefaultChange,
    FieldChange,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    UserChange,
)
from reconciler.plan import apply_changes_in_memory, make_plan
from tests.plan.scenarios import contoso, policy, snapshot, user


def test_every_kind_of_change() -> None:
    tenant = snapshot(
        [policy("Block", "imap"), policy("Old", "pop"), policy("Re", "pop")],
        [user("a@x.com", "Old"), user("b@x.com"), user("c@x.com", "Block")],
        default="Old",
    )
    after = apply_changes_in_memory(
        tenant,
        [
            PolicyCreate("Relay", frozenset({"smtp"})),
            PolicyUpdate(
                "block", (FieldChange("imap", True, False), FieldChange("pop", False, True))
            ),
            PolicyReplace("Re", (FieldChange("pop", True, False),), after=frozenset({"rpc"})),
            DefaultChange("Old", "block", affected_users=1),
            UserChange("user_assign", "b@x.com", "id-b@x.com", None, "relay", "r"),
            UserChange("user_clear", "a@x.com", "id-a@x.com", "Old", None, "r"),
            PolicyDelete("OLD"),
        ],
    )
    assert {p.name: sorted(p.allow) for p in after.policies} == {
        "Block": ["pop"],
        "Re": ["rpc"],
        "Relay": ["smtp"],
    }
    # links show the tenant's spelling, as Get-User does
    assert after.default_policy == "Block"
    assert [(u.upn, u.policy) for u in after.users] == [
        ("a@x.com", None),
        ("b@x.com", "Relay"),
        ("c@x.com", "Block"),
    ]
    assert tenant.default_policy == "Old"  # the input is untouched


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (PolicyCreate("block", frozenset()), 'policy "block" already exists'),
        (PolicyDelete("Nope"), 'policy "Nope" does not exist'),
        (DefaultChange(None, "Nope", 0), 'policy "Nope" does not exist'),
        (
            UserChange("user_clear", "z@x.com", "id-z", None, None, "r"),
            'user "z@x.com" (id-z) is not in the snapshot',
        ),
        (
            UserChange("user_assign", "a@x.com", "id-a@x.com", None, "Nope", "r"),
            'policy "Nope" does not exist',
        ),
    ],
)
def test_impossible_changes_are_refused(change, message) -> None:
    tenant = snapshot([policy("Block")], [user("a@x.com")])
    with pytest.raises(ValueError) as err:
        apply_changes_in_memory(tenant, [change])
    assert str(err.value) == message


def test_contoso_converges() -> None:
    state, tenant = contoso()
    after = apply_changes_in_memory(tenant, make_plan(state, tenant).changes)
    assert make_plan(state, after).changes == ()
