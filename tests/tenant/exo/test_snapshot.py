"""Converting admin API objects, and expanding nested groups safely."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import TenantError
from reconciler.model import TenantUser
from reconciler.tenant.exo.snapshot import (
    ATTRIBUTE_PROPERTIES,
    GroupRef,
    _text,
    expand_group,
    mailbox_setting_of,
    org_smtp_of,
    policy_from_json,
    policy_name_from_reference,
    user_from_json,
    user_select,
    with_mailboxes,
)


def test_policy_switches() -> None:
    policy = policy_from_json(
        {
            "Name": "P",
            "Guid": "g",
            "AllowBasicAuthSmtp": True,
            "AllowBasicAuthPop": "True",
            "AllowBasicAuthImap": False,
            "AllowBasicAuthRest": True,
        }
    )
    assert policy.allow == frozenset({"smtp", "pop"})
    assert policy.guid == "g"


def test_user_select_maps_attribute_names() -> None:
    select = user_select({"country", "city"})
    assert select[-2:] == ["City", "CountryOrRegion"]
    assert "Department" not in select
    with pytest.raises(TenantError, match="cannot read user attribute"):
        user_select({"shoe_size"})


def test_user_conversion() -> None:
    obj = {
        "ExternalDirectoryObjectId": "AAAA-1",
        "Guid": "GUID-1",
        "UserPrincipalName": "ann@contoso.com",
        "Name": "ann",
        "RecipientTypeDetails": "UserMailbox",
        "AuthenticationPolicy": "CN=Block,CN=Auth Policies",
        "DisplayName": "Ann",
        "CountryOrRegion": "France",
        "Department": "  ",
        "AuthenticationPolicy@odata.type": "#String",
    }
    row = user_from_json(obj, ("country", "department"), {"cn=block,cn=auth policies": "Block"})
    assert row is not None
    assert row.exchange_guid == "guid-1"
    user = row.user
    assert (user.id, user.upn, user.identity, user.policy) == (
        "aaaa-1",
        "ann@contoso.com",
        "ann",
        "Block",
    )
    assert (user.country, user.department) == ("France", None)
    assert user_from_json({"Name": "no-entra-id"}, (), {}) is None
    # Joined to the CAS mailboxes by Entra object id, else by Exchange GUID.
    (joined,) = with_mailboxes([user], {}, {"aaaa-1": "enabled"})
    assert joined.smtp_auth == "enabled"
    # The same object dataclasses.replace makes (every field, equality, hash), a new one.
    expected = dataclasses.replace(user, smtp_auth="enabled")
    assert joined == expected and hash(joined) == hash(expected) and joined is not user
    assert [getattr(joined, f.name) for f in dataclasses.fields(joined)] == [
        getattr(expected, f.name) for f in dataclasses.fields(expected)
    ]
    assert user.smtp_auth is None  # the user read is left as it was
    (by_guid,) = with_mailboxes([user], {"aaaa-1": "guid-1"}, {"guid-1": "disabled"})
    assert by_guid.smtp_auth == "disabled"
    # Mailboxes read but none for this user: no mailbox (None), not "organization".
    (other,) = with_mailboxes([user], {}, {"someone-else": "disabled"})
    assert other.smtp_auth is None


def test_mailbox_setting() -> None:
    assert mailbox_setting_of({"Guid": "G", "SmtpClientAuthenticationDisabled": None}) == (
        ["g"],
        "organization",
    )
    assert mailbox_setting_of(
        {"Guid": "G", "ExternalDirectoryObjectId": "E", "SmtpClientAuthenticationDisabled": True}
    ) == (["e", "g"], "disabled")
    assert mailbox_setting_of({"Guid": "G", "SmtpClientAuthenticationDisabled": False})[1] == (
        "enabled"
    )


def test_org_smtp_missing_is_unknown_not_enabled() -> None:
    assert org_smtp_of({"Identity": "Transport Settings"}) is None
    assert org_smtp_of({"SmtpClientAuthenticationDisabled": None}) is None
    assert org_smtp_of({"SmtpClientAuthenticationDisabled": True}) is True


def test_nested_groups_with_a_cycle() -> None:
    members: dict[str, list[dict[str, Any]]] = {
        "a": [
            {"Guid": "b", "Name": "B", "RecipientTypeDetails": "MailUniversalSecurityGroup"},
            {"ExternalDirectoryObjectId": "U1", "RecipientTypeDetails": "UserMailbox"},
        ],
        "b": [
            {"Guid": "a", "Name": "A", "RecipientTypeDetails": "MailUniversalDistributionGroup"},
            {"Guid": "m", "Name": "M365", "RecipientTypeDetails": "GroupMailbox"},
            {"ExternalDirectoryObjectId": "u2", "RecipientTypeDetails": "SharedMailbox"},
        ],
        "m": [{"ExternalDirectoryObjectId": "u3", "RecipientTypeDetails": "UserMailbox"}],
    }
    listed: list[str] = []

    def lister(group: GroupRef) -> list[dict[str, Any]]:
        listed.append(group.guid)
        return members[group.guid]

    root = GroupRef("A", "a", "MailUniversalDistributionGroup")
    assert expand_group(root, lister) == frozenset({"u1", "u2", "u3"})
    assert sorted(listed) == ["a", "b", "m"]  # each group listed once despite the cycle


_TEXT = st.one_of(st.none(), st.text(max_size=12))


@settings(max_examples=300, deadline=None)
@given(
    obj=st.fixed_dictionaries(
        {"ExternalDirectoryObjectId": st.uuids().map(str)},
        optional={
            "UserPrincipalName": _TEXT,
            "Name": _TEXT,
            "Identity": _TEXT,
            "Guid": st.uuids().map(str),
            "RecipientTypeDetails": _TEXT,
            "DisplayName": _TEXT,
            "StsRefreshTokensValidFrom": _TEXT,
            "AuthenticationPolicy": st.one_of(st.none(), st.sampled_from(["Block", "Allow IMAP"])),
            **{prop: _TEXT for prop in ATTRIBUTE_PROPERTIES.values()},
        },
    ),
    attributes=st.sets(st.sampled_from(sorted(ATTRIBUTE_PROPERTIES))),
)
def test_user_built_without_init_is_the_dataclass_user(
    obj: dict[str, Any], attributes: set[str]
) -> None:
    # user_from_json sets TenantUser's slots directly (its frozen __init__ is the slow part):
    # the result must be the very user the constructor makes, so the plan's bytes cannot move.
    row = user_from_json(obj, sorted(attributes), {})
    assert row is not None
    upn = _text(obj, "UserPrincipalName") or ""
    policy = obj.get("AuthenticationPolicy")
    expected = TenantUser(  # what the constructor makes of the same fields
        id=obj["ExternalDirectoryObjectId"].lower(),
        upn=upn,
        identity=_text(obj, "Name") or _text(obj, "Identity") or upn,
        recipient_type=_text(obj, "RecipientTypeDetails") or "User",
        policy=None if policy is None else policy_name_from_reference(policy, {}),
        display_name=_text(obj, "DisplayName") or "",
        sts_refresh_tokens_valid_from=_text(obj, "StsRefreshTokensValidFrom"),
        **{a: _text(obj, ATTRIBUTE_PROPERTIES[a]) for a in attributes},
    )
    assert row.user == expected and hash(row.user) == hash(expected)
    assert repr(row.user) == repr(expected)
    assert row.user.smtp_auth is None
    assert all(getattr(row.user, a) is None for a in set(ATTRIBUTE_PROPERTIES) - attributes)
    with pytest.raises(AttributeError):
        row.user.upn = "changed"  # type: ignore[misc]  # still frozen
