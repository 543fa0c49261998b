"""Turning the admin API's objects into the snapshot's compact value types.

Pure functions (no HTTP): JSON objects of Get-AuthenticationPolicy, Get-User, Get-CASMailbox in;
`TenantPolicy`, `TenantUser` out; and the nested-group expansion over a member-listing function.
Users are converted page by page as they arrive, so raw JSON pages never pile up; repeated
strings (recipient types, policy names, departments) are interned to keep 100k users small.
"""

from __future__ import annotations

import logging
import operator
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from reconciler.errors import TenantError
from reconciler.model import PROTOCOLS, SmtpSetting, TenantPolicy, TenantUser, smtp_setting_of

log = logging.getLogger(__name__)

POLICY_SWITCHES: tuple[str, ...] = tuple(p.switch for p in PROTOCOLS)
POLICY_SELECT: tuple[str, ...] = ("Name", "Identity", "Guid", "DistinguishedName", *POLICY_SWITCHES)
ORG_SELECT: tuple[str, ...] = (
    "Name",
    "Identity",
    "Guid",
    "DefaultAuthenticationPolicy",
    "OAuth2ClientProfileEnabled",
)

# policies.yaml match keys -> Get-User properties (exo-authpolicy-semantics.md §3.3).
ATTRIBUTE_PROPERTIES: Mapping[str, str] = {
    "department": "Department",
    "company": "Company",
    "office": "Office",
    "title": "Title",
    "city": "City",
    "country": "CountryOrRegion",
}
USER_CORE_SELECT: tuple[str, ...] = (
    "ExternalDirectoryObjectId",
    "UserPrincipalName",
    "Name",
    "Guid",
    "RecipientTypeDetails",
    "AuthenticationPolicy",
    "StsRefreshTokensValidFrom",
    "DisplayName",
)
GROUP_MEMBER_SELECT: tuple[str, ...] = (
    "Name",
    "Guid",
    "ExternalDirectoryObjectId",
    "RecipientTypeDetails",
)
# Resolving a group named in the rules: every property a name in policies.yaml may be.
GROUP_RESOLVE_SELECT: tuple[str, ...] = (
    *GROUP_MEMBER_SELECT,
    "DisplayName",
    "Alias",
    "PrimarySmtpAddress",
    "DistinguishedName",
)
CAS_SELECT: tuple[str, ...] = (
    "Name",
    "Guid",
    "ExternalDirectoryObjectId",
    "SmtpClientAuthenticationDisabled",
)
# RecipientTypeDetails of groups whose members we can list (and recurse into).
UNIFIED_GROUP_TYPES = frozenset({"GroupMailbox"})
DISTRIBUTION_GROUP_TYPES = frozenset(
    {
        "MailUniversalDistributionGroup",
        "MailUniversalSecurityGroup",
        "MailNonUniversalGroup",
        "RoomList",
        "NonUniversalGroup",
        "UniversalDistributionGroup",
        "UniversalSecurityGroup",
    }
)
DYNAMIC_GROUP_TYPES = frozenset({"DynamicDistributionGroup"})


def user_select(attributes: Iterable[str]) -> list[str]:
    """$select for Get-User: the core fields plus only the attributes the rules use."""
    extra = [ATTRIBUTE_PROPERTIES[a] for a in sorted(set(attributes)) if a in ATTRIBUTE_PROPERTIES]
    unknown = sorted(set(attributes) - set(ATTRIBUTE_PROPERTIES))
    if unknown:
        raise TenantError(f"cannot read user attribute(s) {', '.join(unknown)} from Exchange")
    return [*USER_CORE_SELECT, *extra]


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if value.__class__ is str:  # the common case, kept fast: 100k users x 8 fields
        return value if value and not value.isspace() else None
    if isinstance(value, dict):  # an ADObjectId as an object (other serialization levels)
        value = value.get("Name") or value.get("Identity") or value.get("DistinguishedName")
        if value is None:
            return None
    text = str(value)
    return text if text.strip() else None


def _interned(value: str | None) -> str | None:
    return sys.intern(value) if value is not None else None


def policy_from_json(obj: Mapping[str, Any]) -> TenantPolicy:
    """A Get-AuthenticationPolicy object as a TenantPolicy (all 12 switches)."""
    name = _text(obj, "Name") or _text(obj, "Identity")
    if not name:
        raise TenantError("Get-AuthenticationPolicy returned a policy without a name")
    allow = frozenset(p.name for p in PROTOCOLS if _as_bool(obj.get(p.switch)))
    return TenantPolicy(
        name=name,
        allow=allow,
        guid=str(obj.get("Guid") or ""),
        distinguished_name=str(obj.get("DistinguishedName") or ""),
    )


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):  # some serializers send "True"/"False"
        return value.strip().lower() == "true"
    return bool(value)


def _optional_bool(value: Any) -> bool | None:
    if value is None:
        return None
    return _as_bool(value)


def policy_keys(policies: Iterable[TenantPolicy]) -> dict[str, str]:
    """Every form Exchange may use to refer to a policy (name, GUID, DN), folded -> its name."""
    keys: dict[str, str] = {}
    for policy in policies:
        for key in (policy.name, policy.guid, policy.distinguished_name):
            if key:
                keys[key.casefold()] = policy.name
    return keys


def policy_name_from_reference(value: Any, policies_by_key: Mapping[str, str]) -> str | None:
    """The one reading of a policy reference (Get-User AuthenticationPolicy, Get-OrganizationConfig
    DefaultAuthenticationPolicy): a name, a DN, a GUID, or an object carrying any of them
    (round2-facts.md §3: the form is unverified). Returns the policy's name; a reference that
    names no known policy (a deleted one's GUID) is returned as it came, never guessed."""
    if value is None:
        return None
    if isinstance(value, dict):
        candidates = [
            value.get(k)
            for k in ("Name", "ObjectGuid", "Guid", "DistinguishedName", "Identity", "Id")
        ]
        texts = [str(c) for c in candidates if c not in (None, "")]
        for text in texts:
            found = policies_by_key.get(text.casefold())
            if found is not None:
                return found
        return texts[0] if texts else None
    text = str(value)
    if not text.strip():
        return None
    return policies_by_key.get(text.casefold(), text)


@dataclass(slots=True)
class UserRow:
    """A converted Get-User object plus the Exchange GUID used as the Set-User identity."""

    user: TenantUser
    exchange_guid: str


# TenantUser is frozen: its __init__ sets each of its 14 slots through object.__setattr__, the
# largest cost of reading a user. Users read from pages are built by setting the slots through
# their descriptors instead (same object: equal, same hash, same plan bytes; tested).
_USER_FIELDS = tuple(f.name for f in fields(TenantUser))
_SLOT = {name: getattr(TenantUser, name).__set__ for name in _USER_FIELDS}
if (
    "id", "upn", "identity", "recipient_type", "policy", "display_name",
    "sts_refresh_tokens_valid_from", *ATTRIBUTE_PROPERTIES, "smtp_auth",
) != _USER_FIELDS:  # fmt: skip
    raise ImportError("TenantUser's fields changed: update _new_user")
_ATTRIBUTE_SLOTS = {attribute: _SLOT[attribute] for attribute in ATTRIBUTE_PROPERTIES}
_SETTERS = tuple(_SLOT[name] for name in _USER_FIELDS)
(
    _set_id, _set_upn, _set_identity, _set_type, _set_policy, _set_display, _set_sts,
    _set_department, _set_company, _set_office, _set_title, _set_city, _set_country, _set_smtp,
) = _SETTERS  # fmt: skip
_new = object.__new__
_FIELDS_OF = operator.attrgetter(*_USER_FIELDS)


def _new_user(
    user_id: str,
    upn: str,
    identity: str,
    recipient_type: str,
    policy: str | None,
    display_name: str,
    sts: str | None,
) -> TenantUser:
    """TenantUser(...) with the match attributes and smtp_auth None, without its __init__."""
    user = _new(TenantUser)
    _set_id(user, user_id)
    _set_upn(user, upn)
    _set_identity(user, identity)
    _set_type(user, recipient_type)
    _set_policy(user, policy)
    _set_display(user, display_name)
    _set_sts(user, sts)
    _set_department(user, None)
    _set_company(user, None)
    _set_office(user, None)
    _set_title(user, None)
    _set_city(user, None)
    _set_country(user, None)
    _set_smtp(user, None)
    return user


def user_from_json(
    obj: Mapping[str, Any],
    attributes: Iterable[str],
    policies_by_key: Mapping[str, str],
) -> UserRow | None:
    """A Get-User object as a TenantUser; None for an object without ExternalDirectoryObjectId
    (it has no Entra identity, so the planner could not write to it by id)."""
    user_id = _text(obj, "ExternalDirectoryObjectId")
    if not user_id:
        return None
    user_id = user_id.lower()
    guid = str(obj.get("Guid") or "").lower()
    upn = _text(obj, "UserPrincipalName") or ""
    policy = obj.get("AuthenticationPolicy")
    if policy is not None:
        policy = policy_name_from_reference(policy, policies_by_key)
        if policy is not None:
            policy = sys.intern(policy)
    user = _new_user(
        user_id,
        upn,
        _text(obj, "Name") or _text(obj, "Identity") or upn,
        sys.intern(_text(obj, "RecipientTypeDetails") or "User"),
        policy,
        _text(obj, "DisplayName") or "",
        _text(obj, "StsRefreshTokensValidFrom"),
    )
    for attribute in attributes:
        prop = ATTRIBUTE_PROPERTIES.get(attribute)
        if prop:
            _ATTRIBUTE_SLOTS[attribute](user, _interned(_text(obj, prop)))
    return UserRow(user, guid)


def with_mailboxes(
    users: Iterable[TenantUser],
    guids: Mapping[str, str],
    mailboxes: Mapping[str, SmtpSetting],
) -> tuple[TenantUser, ...]:
    """Each user with its CAS mailbox's SMTP AUTH setting, joined by Entra object id, else by
    Exchange GUID (`guids`: user id -> GUID); None (no mailbox) when neither matches."""
    joined = []
    for user in users:
        setting = mailboxes.get(user.id)
        if setting is None:
            guid = guids.get(user.id)
            setting = mailboxes.get(guid) if guid else None
        joined.append(user if setting is None else _with_smtp(user, setting))
    return tuple(joined)


def _with_smtp(user: TenantUser, setting: SmtpSetting) -> TenantUser:
    """replace(user, smtp_auth=setting) through the slots' descriptors (the join makes one per
    mailbox: replace's __init__ cost more than reading the user did)."""
    copy = _new(TenantUser)
    for set_field, value in zip(_SETTERS, _FIELDS_OF(user), strict=True):
        set_field(copy, value)
    _set_smtp(copy, setting)
    return copy


def mailbox_setting_of(obj: Mapping[str, Any]) -> tuple[list[str], SmtpSetting]:
    """Keys (ExternalDirectoryObjectId, Guid; lower-case) and the SMTP AUTH setting of a
    Get-CASMailbox object ($null: follows the organization)."""
    value = _optional_bool(obj.get("SmtpClientAuthenticationDisabled"))
    keys = [str(obj[k]).lower() for k in ("ExternalDirectoryObjectId", "Guid") if obj.get(k)]
    return keys, smtp_setting_of(value)


def org_smtp_of(obj: Mapping[str, Any]) -> bool | None:
    """Get-TransportConfig SmtpClientAuthenticationDisabled; None when the object does not
    show it (a service-side default the API does not expose reads as unknown, not as on)."""
    return _optional_bool(obj.get("SmtpClientAuthenticationDisabled"))


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True, slots=True)
class GroupRef:
    """A group found in the tenant: its GUID (for member listing) and kind."""

    name: str
    guid: str
    recipient_type: str


MemberLister = Callable[[GroupRef], list[dict[str, Any]]]


def is_group_type(recipient_type: str) -> bool:
    return (
        recipient_type in UNIFIED_GROUP_TYPES
        or recipient_type in DISTRIBUTION_GROUP_TYPES
        or recipient_type in DYNAMIC_GROUP_TYPES
    )


def expand_group(root: GroupRef, list_members: MemberLister) -> frozenset[str]:
    """Ids (ExternalDirectoryObjectId, lower-case) of every non-group member of `root`, nested
    groups expanded. Safe on cycles: each group is visited once per expansion."""
    members: set[str] = set()
    visited: set[str] = set()
    stack = [root]
    while stack:
        group = stack.pop()
        key = group.guid.lower() or group.name.casefold()
        if key in visited:
            continue
        visited.add(key)
        if group.recipient_type in DYNAMIC_GROUP_TYPES:
            # Membership is a filter evaluated at send time; listing it is not supported.
            log.warning(
                "group %r is a dynamic distribution group: its members are not expanded", group.name
            )
            continue
        for member in list_members(group):
            rtd = str(member.get("RecipientTypeDetails") or "")
            if is_group_type(rtd):
                stack.append(
                    GroupRef(str(member.get("Name") or ""), str(member.get("Guid") or ""), rtd)
                )
                continue
            member_id = member.get("ExternalDirectoryObjectId")
            if member_id:
                members.add(str(member_id).lower())
    return frozenset(members)
