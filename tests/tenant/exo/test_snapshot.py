"""Converting admin API objects, and expanding nested groups safely."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.errors import TenantError
from reconciler.tenant.exo.snapshot import (
    GroupRef,
    expand_group,
    mailbox_setting_of,
    org_smtp_of,
    policy_from_json,
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
