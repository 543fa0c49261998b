"""The cmdlets, with Exchange's semantics (reference/exo-authpolicy-semantics.md).

`CmdletEngine.run(spec, parameters)` validates parameters like the gateway does, reads or
changes the `TenantState` under its lock, and returns a `CmdletResult`: the objects (paged by
the server), warnings, and for writes whether state changed. Cmdlet errors are `CmdletError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.emulator import wire
from reconciler.emulator.filters import Getters, compile_filter, compile_indexed, field_getters
from reconciler.emulator.settings import EmulatorSettings
from reconciler.emulator.state import (
    EXCHANGE_VERSION,
    MAILBOX_TYPES,
    PROTOCOL_SWITCHES,
    TenantState,
    new_policy_record,
    now_text,
)

COMMON_PARAMETERS = (
    "Confirm",
    "WhatIf",
    "ErrorAction",
    "WarningAction",
    "Verbose",
    "Debug",
    "InformationAction",
)
NAME_LIMIT = 64
DEFAULT_RESULT_SIZE = 1000

USER_RECIPIENT_TYPE_DETAILS = [
    "DisabledUser",
    "DiscoveryMailbox",
    "EquipmentMailbox",
    "GuestMailUser",
    "GroupMailbox",
    "LegacyMailbox",
    "LinkedMailbox",
    "LinkedRoomMailbox",
    "LinkedUser",
    "MailUser",
    "PublicFolderMailbox",
    "RemoteEquipmentMailbox",
    "RemoteRoomMailbox",
    "RemoteSharedMailbox",
    "RemoteTeamMailbox",
    "RemoteUserMailbox",
    "RoomMailbox",
    "SchedulingMailbox",
    "SharedMailbox",
    "SharedWithMailUser",
    "TeamMailbox",
    "User",
    "UserMailbox",
]
RECIPIENT_TYPE_DETAILS = sorted(
    {
        *USER_RECIPIENT_TYPE_DETAILS,
        "MailUniversalDistributionGroup",
        "MailUniversalSecurityGroup",
        "MailContact",
        "DynamicDistributionGroup",
    }
)
RECIPIENT_TYPES = [
    "DynamicDistributionGroup",
    "MailContact",
    "MailNonUniversalGroup",
    "MailUniversalDistributionGroup",
    "MailUniversalSecurityGroup",
    "MailUser",
    "PublicFolder",
    "UserMailbox",
]
LINK_TYPES = ("Members", "Owners", "Subscribers", "Aggregators", "EventSubscribers")
NO_CHANGE_WARNING = (
    "The command completed successfully but no settings of '{0}' have been modified."
)

Render = Callable[[Any, "Selector | None"], dict[str, Any]]


class Selector:
    """A `$select` list, resolved case-insensitively against the emitted property names."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = [n.strip() for n in names if n.strip()]
        self._lower = [n.lower() for n in self.names]
        self._resolved: dict[tuple[str, ...], tuple[str, ...]] = {}

    def resolve(self, available: tuple[str, ...]) -> tuple[str, ...]:
        """The selected names among `available`, spelled as emitted (cached per field list)."""
        resolved = self._resolved.get(available)
        if resolved is None:
            by_lower = {k.lower(): k for k in available}
            resolved = tuple(by_lower[n] for n in self._lower if n in by_lower)
            self._resolved[available] = resolved
        return resolved

    def apply(self, full: dict[str, Any]) -> dict[str, Any]:
        """Keep the selected properties (and their @-annotations)."""
        by_lower = {k.lower(): k for k in full if "@" not in k}
        out: dict[str, Any] = {}
        for wanted in self._lower:
            key = by_lower.get(wanted)
            if key is None:
                continue
            for suffix in ("@odata.type", "@data.type"):
                if key + suffix in full:
                    out[key + suffix] = full[key + suffix]
            out[key] = full[key]
        return out


@dataclass
class CmdletResult:
    """What a cmdlet produced, before paging."""

    items: Sequence[Any] = ()
    render: Render | None = None
    limit: int | None = DEFAULT_RESULT_SIZE  # ResultSize; None = Unlimited
    warnings: list[str] = field(default_factory=list)
    write: bool = False
    changed: bool = False
    dry_run: bool = False
    confirmation: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CmdletSpec:
    """A cmdlet the gateway knows."""

    name: str
    write: bool
    parameters: tuple[str, ...]
    mandatory: tuple[str, ...]
    handler: Callable[[CmdletEngine, dict[str, Any]], CmdletResult]
    recipient_write: bool = False  # a write Exchange Recipient Administrator may make


# ------------------------------------------------------------------------- value coercion
def _switch(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "$true", "false", "$false"):
        return value.strip().lower() in ("true", "$true")
    raise wire.bad_value(name, value, "System.Management.Automation.SwitchParameter")


def _identity(name: str, value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # PowerShell would bind a number as its string form
    if isinstance(value, str):
        raise wire.CmdletError(
            400,
            "BadRequest",
            "Error executing cmdlet",
            wire.VALIDATION_CLASS,
            f"Cannot validate argument on parameter '{name}'. The argument is null or empty. "
            "Provide an argument that is not null or empty, and then try the command again.",
        )
    raise wire.bad_value(name, value, "Microsoft.Exchange.Configuration.Tasks.IdParameter")


def _result_size(value: Any) -> int | None:
    if value is None:
        return DEFAULT_RESULT_SIZE
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return None
    try:
        number = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        number = -1
    if number < 1:
        raise wire.bad_value(
            "ResultSize", value, "Microsoft.Exchange.Data.Unlimited`1[System.UInt32]"
        )
    return number


def _enum_list(name: str, value: Any, choices: Sequence[str], type_name: str) -> set[str]:
    values = value if isinstance(value, list) else [value]
    by_lower = {c.lower(): c for c in choices}
    out: set[str] = set()
    for item in values:
        match = by_lower.get(str(item).strip().lower()) if isinstance(item, str) else None
        if match is None:
            raise wire.bad_enum(name, item, type_name, list(choices))
        out.add(match)
    return out


def _utc(text: str) -> str:
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _annotate(out: dict[str, Any], guids: Sequence[str], dates: Sequence[str]) -> None:
    for key in guids:
        if out.get(key) is not None:
            out[key + "@odata.type"] = "#Guid"
            out[key + "@data.type"] = "System.Guid"
    for key in dates:
        if out.get(key) is not None:
            out[key + "@data.type"] = "System.DateTime"


# ----------------------------------------------------------------------------- the engine
class CmdletEngine:
    """Runs cmdlets against one tenant."""

    def __init__(self, state: TenantState, settings: Callable[[], EmulatorSettings]) -> None:
        self.state = state
        self._settings = settings
        self.specs: dict[str, CmdletSpec] = {spec.name.lower(): spec for spec in _SPECS}
        self._request = threading.local()

    @property
    def reference_form(self) -> str:
        """How this request renders policy references (set by `begin_request`)."""
        return getattr(self._request, "reference_form", "name")

    def begin_request(self, reference_form: str) -> None:
        """Called by the server at the start of each admin request, on its thread."""
        self._request.reference_form = reference_form

    @property
    def settings(self) -> EmulatorSettings:
        """The live settings (they may change at run time)."""
        return self._settings()

    def lookup(self, name: Any) -> CmdletSpec | None:
        """The cmdlet named (case-insensitive), or None."""
        return self.specs.get(name.strip().lower()) if isinstance(name, str) else None

    def bind(self, spec: CmdletSpec, parameters: dict[str, Any]) -> dict[str, Any]:
        """Match parameter names case-insensitively; reject unknown ones and missing mandatory."""
        allowed = {p.lower(): p for p in (*spec.parameters, *COMMON_PARAMETERS)}
        bound: dict[str, Any] = {}
        unknown: list[str] = []
        for key, value in parameters.items():
            if "@" in key:  # "<Param>@odata.type" siblings describe a value; not a parameter
                continue
            canonical = allowed.get(key.lower())
            if canonical is None:
                unknown.append(key)
            else:
                bound[canonical] = value
        if unknown:
            raise wire.parameter_set(spec.name, unknown)
        for name in spec.mandatory:
            if name not in bound:
                raise wire.missing_parameter(spec.name, name)
        return bound

    def run(self, spec: CmdletSpec, parameters: dict[str, Any]) -> CmdletResult:
        """Bind and execute one cmdlet."""
        bound = self.bind(spec, parameters)
        with self.state.lock:
            return spec.handler(self, bound)

    # ----------------------------------------------------------------- renderers
    def render_user(self, user: dict[str, Any], select: Selector | None) -> dict[str, Any]:
        """Get-User's object (reference §9); with $select only the chosen fields are built."""
        keys = select.resolve(_USER_FIELD_NAMES) if select else _USER_FIELD_NAMES
        out: dict[str, Any] = {}
        for key in keys:
            value = _USER_FIELDS[key](self, user)
            annotations = _USER_ANNOTATIONS.get(key)
            if annotations and value is not None:
                out.update(annotations)
            out[key] = value
        return out

    def render_policy(self, policy: dict[str, Any], select: Selector | None) -> dict[str, Any]:
        """Get-AuthenticationPolicy's object."""
        out: dict[str, Any] = {
            "Identity": policy["Name"],
            "Id": policy["Name"],
            "Name": policy["Name"],
            "AdminDisplayName": "",
            "DistinguishedName": policy["DistinguishedName"],
            "Guid": policy["Guid"],
            "ExchangeObjectId": policy["Guid"],
        }
        for switch in PROTOCOL_SWITCHES:
            out[switch] = policy[switch]
        out["AllowBasicAuthRest"] = False  # output-only, seen in old dumps
        out.update(
            {
                "IsValid": True,
                "ObjectState": "Unchanged",
                "ExchangeVersion": EXCHANGE_VERSION,
                "OrganizationId": self.state.domain,
                "WhenCreated": policy["WhenCreated"],
                "WhenChanged": policy["WhenChanged"],
                "WhenCreatedUTC": _utc(policy["WhenCreated"]),
                "WhenChangedUTC": _utc(policy["WhenChanged"]),
            }
        )
        _annotate(out, ("Guid", "ExchangeObjectId"), ("WhenCreated", "WhenChanged"))
        return select.apply(out) if select else out

    def render_recipient(self, rec: dict[str, Any], select: Selector | None) -> dict[str, Any]:
        """Get-Recipient's object (users and groups)."""
        is_group = "members" in rec
        smtp = rec["PrimarySmtpAddress"] if is_group else rec["WindowsEmailAddress"]
        out = {
            "Identity": rec["Name"],
            "Id": rec["Name"],
            "Name": rec["Name"],
            "DisplayName": rec["DisplayName"],
            "Alias": rec.get("Alias") or rec["Name"],
            "PrimarySmtpAddress": smtp,
            "RecipientType": rec["RecipientType"],
            "RecipientTypeDetails": rec["RecipientTypeDetails"],
            "DistinguishedName": rec["DistinguishedName"],
            "Guid": rec["Guid"],
            "ExchangeObjectId": rec["ExchangeObjectId"],
            "ExternalDirectoryObjectId": rec["ExternalDirectoryObjectId"],
            "Department": rec.get("Department", ""),
            "Company": rec.get("Company", ""),
            "Office": rec.get("Office", ""),
            "City": rec.get("City", ""),
            "CountryOrRegion": rec.get("CountryOrRegion", ""),
            "Title": rec.get("Title", ""),
            "WhenCreated": rec["WhenCreated"],
            "WhenChanged": rec["WhenChanged"],
        }
        _annotate(out, ("Guid", "ExchangeObjectId"), ("WhenCreated", "WhenChanged"))
        return select.apply(out) if select else out

    def render_cas(self, user: dict[str, Any], select: Selector | None) -> dict[str, Any]:
        """Get-CASMailbox's object."""
        out = {
            "Identity": user["Name"],
            "Id": user["Name"],
            "Name": user["Name"],
            "DisplayName": user["DisplayName"],
            "PrimarySmtpAddress": user["WindowsEmailAddress"],
            "DistinguishedName": user["DistinguishedName"],
            "Guid": user["Guid"],
            "ExternalDirectoryObjectId": user["ExternalDirectoryObjectId"],
            "SmtpClientAuthenticationDisabled": user["_smtp_disabled"],
            "ActiveSyncEnabled": True,
            "OWAEnabled": True,
            "PopEnabled": True,
            "ImapEnabled": True,
            "MAPIEnabled": True,
            "EwsEnabled": True,
        }
        _annotate(out, ("Guid",), ())
        return select.apply(out) if select else out

    def render_plain(self, obj: dict[str, Any], select: Selector | None) -> dict[str, Any]:
        """Objects that are already wire dicts."""
        return select.apply(obj) if select else obj

    def organization_object(self) -> dict[str, Any]:
        """Get-OrganizationConfig's single object."""
        org = self.state.organization
        domain = self.state.domain
        out = {
            "Identity": domain,
            "Id": domain,
            "Name": domain,
            "DisplayName": self.state.display_name,
            "Guid": org["Guid"],
            "DefaultAuthenticationPolicy": self.state.policy_reference(
                org.get("DefaultAuthenticationPolicy"), self.reference_form
            ),
            "OAuth2ClientProfileEnabled": self.settings.oauth2_client_profile_enabled,
            "PublicFoldersEnabled": "Local",
            "ActivityBasedAuthenticationTimeoutInterval": "06:00:00",
            "IsValid": True,
            "WhenCreated": org["WhenCreated"],
            "WhenChanged": org["WhenChanged"],
        }
        _annotate(out, ("Guid",), ("WhenCreated", "WhenChanged"))
        return out

    def org_smtp_shown(self) -> bool | None:
        """The org SMTP AUTH switch as Get-TransportConfig shows it: the admin's value, or
        for a tenant where none was ever set, Microsoft's default-off as `smtp_default_off`
        says it appears (hidden: no value; org_flag: $true)."""
        value = self.state.transport.get("SmtpClientAuthenticationDisabled")
        if value is None and self.settings.smtp_default_off == "org_flag":
            return True
        return None if value is None else bool(value)

    def transport_object(self) -> dict[str, Any]:
        """Get-TransportConfig's single object."""
        transport = self.state.transport
        out = {
            "Identity": "Transport Settings",
            "Id": "Transport Settings",
            "Name": "Transport Settings",
            "Guid": transport["Guid"],
            "SmtpClientAuthenticationDisabled": self.org_smtp_shown(),
            "MaxSendSize": "35 MB (36,700,160 bytes)",
            "MaxReceiveSize": "36 MB (37,748,736 bytes)",
            "IsValid": True,
        }
        _annotate(out, ("Guid",), ())
        return out

    # ------------------------------------------------------------------- helpers
    def resolve_user(self, identity: str) -> dict[str, Any]:
        """A user by Identity, or Exchange's not-found error."""
        user = self.state.find_user(
            identity, allow_external_id=self.settings.accept_external_directory_object_id
        )
        if user is None:
            raise wire.not_found(identity)
        return user

    def resolve_policy(self, identity: str) -> dict[str, Any]:
        """A policy by name, DN or GUID, or Exchange's not-found error."""
        policy = self.state.find_policy(identity)
        if policy is None:
            raise wire.not_found(identity)
        return policy

    def user_getters(self) -> Getters:
        """Filterable Get-User properties."""
        getters = field_getters(
            [
                "Name",
                "DisplayName",
                "UserPrincipalName",
                "RecipientTypeDetails",
                "RecipientType",
                "Department",
                "Company",
                "Office",
                "Title",
                "City",
                "CountryOrRegion",
                "FirstName",
                "LastName",
                "ExternalDirectoryObjectId",
                "WindowsEmailAddress",
                "IsDirSynced",
                "AccountDisabled",
                "WhenCreated",
            ]
        )
        getters["microsoftonlineservicesid"] = (
            "MicrosoftOnlineServicesID",
            lambda u: u["UserPrincipalName"],
        )
        getters["guid"] = ("Guid", lambda u: u["Guid"])
        # The filter compares the policy link's DN, never the name (reference semantics §3.3).
        state = self.state
        getters["authenticationpolicy"] = (
            "AuthenticationPolicy",
            lambda u: state.policy_dn_of(u["_policy"]),
        )
        return getters

    def write_result(
        self,
        cmdlet: str,
        identity: str,
        params: dict[str, Any],
        changed: bool,
        *,
        target: str | None = None,
    ) -> CmdletResult:
        """A write's result, with the no-change warning and the write log entry."""
        result = CmdletResult(write=True, changed=changed)
        if changed:
            result.log.append(
                {
                    "cmdlet": cmdlet,
                    "identity": identity,
                    "target": target or identity,
                    "params": {k: v for k, v in params.items() if k not in _NOT_LOGGED},
                }
            )
        else:
            result.warnings.append(NO_CHANGE_WARNING.format(target or identity))
        return result


def _user_field(name: str) -> Callable[[CmdletEngine, dict[str, Any]], Any]:
    return lambda engine, user: user[name]


_USER_FIELDS: dict[str, Callable[[CmdletEngine, dict[str, Any]], Any]] = {
    "Identity": _user_field("Name"),
    "Id": _user_field("Name"),
    "Name": _user_field("Name"),
    "DistinguishedName": _user_field("DistinguishedName"),
    "Guid": _user_field("Guid"),
    "ExchangeObjectId": _user_field("ExchangeObjectId"),
    "ExternalDirectoryObjectId": _user_field("ExternalDirectoryObjectId"),
    "UserPrincipalName": _user_field("UserPrincipalName"),
    "MicrosoftOnlineServicesID": _user_field("UserPrincipalName"),
    "DisplayName": _user_field("DisplayName"),
    "FirstName": _user_field("FirstName"),
    "LastName": _user_field("LastName"),
    "RecipientType": _user_field("RecipientType"),
    "RecipientTypeDetails": _user_field("RecipientTypeDetails"),
    "WindowsEmailAddress": _user_field("WindowsEmailAddress"),
    "Department": _user_field("Department"),
    "Company": _user_field("Company"),
    "Office": _user_field("Office"),
    "Title": _user_field("Title"),
    "City": _user_field("City"),
    "CountryOrRegion": _user_field("CountryOrRegion"),
    "IsDirSynced": _user_field("IsDirSynced"),
    "AccountDisabled": _user_field("AccountDisabled"),
    # The direct assignment only, in the request's reference form (policy_reference_format;
    # a deleted policy shows its GUID).
    "AuthenticationPolicy": lambda engine, user: engine.state.policy_reference(
        user["_policy"], engine.reference_form
    ),
    "StsRefreshTokensValidFrom": _user_field("StsRefreshTokensValidFrom"),
    "OrganizationalUnitRoot": lambda engine, user: engine.state.domain,
    "IsValid": lambda engine, user: True,
    "ExchangeVersion": lambda engine, user: EXCHANGE_VERSION,
    "WhenCreated": _user_field("WhenCreated"),
    "WhenChanged": _user_field("WhenChanged"),
    "WhenCreatedUTC": lambda engine, user: _utc(user["WhenCreated"]),
    "WhenChangedUTC": lambda engine, user: _utc(user["WhenChanged"]),
}
_USER_FIELD_NAMES = tuple(_USER_FIELDS)
_GUID_ANNOTATIONS = {"@odata.type": "#Guid", "@data.type": "System.Guid"}
_DATE_ANNOTATIONS = {"@data.type": "System.DateTime"}
_USER_ANNOTATIONS: dict[str, dict[str, str]] = {
    **{
        key: {key + suffix: value for suffix, value in _GUID_ANNOTATIONS.items()}
        for key in ("Guid", "ExchangeObjectId")
    },
    **{
        key: {key + suffix: value for suffix, value in _DATE_ANNOTATIONS.items()}
        for key in (
            "StsRefreshTokensValidFrom",
            "WhenCreated",
            "WhenChanged",
            "WhenCreatedUTC",
            "WhenChangedUTC",
        )
    },
}


_NOT_LOGGED = frozenset({"Identity", *COMMON_PARAMETERS})


def _dry_run(bound: dict[str, Any]) -> bool:
    confirm = bound.get("Confirm")
    what_if = bound.get("WhatIf")
    return (confirm is not None and _switch("Confirm", confirm)) or (
        what_if is not None and _switch("WhatIf", what_if)
    )


def _confirmation(action: str, target: str) -> CmdletResult:
    return CmdletResult(
        write=True,
        dry_run=True,
        confirmation=f'Are you sure you want to perform this action?\r\n{action} "{target}".',
    )


def _page_of(
    items: Sequence[Any],
    render: Render,
    bound: dict[str, Any],
) -> CmdletResult:
    return CmdletResult(items=items, render=render, limit=_result_size(bound.get("ResultSize")))


# ------------------------------------------------------------------- authentication policies
def _get_authentication_policy(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    if "AllowLegacyExchangeTokens" in bound and _switch(
        "AllowLegacyExchangeTokens", bound["AllowLegacyExchangeTokens"]
    ):
        status = state.organization.get("LegacyExchangeTokens", "(Not Set)")
        return CmdletResult(
            items=[{"AllowLegacyExchangeTokens": status, "Allowed": [], "Blocked": []}],
            render=engine.render_plain,
            limit=None,
        )
    policies = sorted(state.policies.values(), key=lambda p: p["WhenCreated"])
    identity = bound.get("Identity")
    if identity is not None:
        policy = state.find_policy(_identity("Identity", identity))
        if policy is not None:
            policies = [policy]
        elif not engine.settings.missing_policy_identity_returns_all:
            raise wire.not_found(str(identity))
        # else: the documented behaviour, "returns all objects" (reference semantics §1.5)
    return CmdletResult(items=policies, render=engine.render_policy, limit=None)


def _switch_values(bound: dict[str, Any]) -> dict[str, bool]:
    return {s: _switch(s, bound[s]) for s in PROTOCOL_SWITCHES if s in bound}


def _new_authentication_policy(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    name = bound["Name"]
    if not isinstance(name, str) or not name.strip():
        raise wire.CmdletError(
            400,
            "BadRequest",
            "Error executing cmdlet",
            wire.VALIDATION_CLASS,
            "Cannot validate argument on parameter 'Name'. The argument is null or empty. Provide "
            "an argument that is not null or empty, and then try the command again.",
        )
    name = name.strip()
    if len(name) > NAME_LIMIT:
        raise wire.too_long("Name", NAME_LIMIT)
    switches = _switch_values(bound)
    existing = state.find_policy(name)
    if existing is not None:
        raise wire.already_exists(existing["DistinguishedName"])
    if _dry_run(bound):
        return _confirmation("Creating authentication policy", name)
    policy = new_policy_record(name, switches)
    state.add_policy(policy)
    result = engine.write_result("New-AuthenticationPolicy", name, bound, True)
    if engine.settings.new_returns_object:
        result.items = [engine.render_policy(policy, None)]
        result.render = engine.render_plain
    return result


def _set_authentication_policy(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    identity = _identity("Identity", bound["Identity"])
    if identity.lower() == "legacyexchangetokens" and (
        "AllowLegacyExchangeTokens" in bound or "BlockLegacyExchangeTokens" in bound
    ):
        allow = "AllowLegacyExchangeTokens" in bound and _switch(
            "AllowLegacyExchangeTokens", bound["AllowLegacyExchangeTokens"]
        )
        if _dry_run(bound):
            return _confirmation("Setting legacy Exchange tokens", identity)
        before = state.organization.get("LegacyExchangeTokens")
        state.organization["LegacyExchangeTokens"] = "True" if allow else "False"
        changed = before != state.organization["LegacyExchangeTokens"]
        return engine.write_result("Set-AuthenticationPolicy", identity, bound, changed)
    switches = _switch_values(bound)  # parameter binding fails before identity resolution
    policy = engine.resolve_policy(identity)
    failing = engine.settings.null_reference_policies
    if "*" in failing or policy["Name"].lower() in {n.lower() for n in failing}:
        # The 2024 service bug (Microsoft365DSC#4819), reproduced on demand.
        raise wire.CmdletError(
            400,
            "BadRequest",
            "Error executing cmdlet",
            wire.NULL_REFERENCE_CLASS,
            "Object reference not set to an instance of an object.",
        )
    if _dry_run(bound):
        return _confirmation("Setting authentication policy", policy["Name"])
    changed = False
    for switch, value in switches.items():  # only the switches passed change
        if policy[switch] != value:
            policy[switch] = value
            changed = True
    if changed:
        policy["WhenChanged"] = now_text()
    return engine.write_result(
        "Set-AuthenticationPolicy", identity, bound, changed, target=policy["Name"]
    )


def _remove_authentication_policy(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    identity = _identity("Identity", bound["Identity"])
    policy = engine.resolve_policy(identity)
    guid = policy["Guid"].lower()
    holders = state.users_holding(guid)
    is_default = (state.organization.get("DefaultAuthenticationPolicy") or "").lower() == guid
    mode = engine.settings.remove_referenced
    if (holders or is_default) and mode == "reject":
        reasons = []
        if holders:
            reasons.append(f"it's assigned to {len(holders)} user(s)")
        if is_default:
            reasons.append("it's the organization's default authentication policy")
        raise wire.CmdletError(
            400,
            "BadRequest",
            "Error executing cmdlet",
            wire.INVALID_OPERATION_CLASS,
            f"The authentication policy '{policy['Name']}' can't be removed because "
            f"{' and '.join(reasons)}.",
            string_id="Ex3A6C21",
        )
    if _dry_run(bound):
        return _confirmation("Removing authentication policy", policy["Name"])
    state.remove_policy(guid)
    if mode == "clear":
        stamp = now_text()
        for user in holders:
            user["_policy"] = None
            user["WhenChanged"] = stamp
        if is_default:
            state.organization["DefaultAuthenticationPolicy"] = None
            state.organization["WhenChanged"] = stamp
    return engine.write_result(
        "Remove-AuthenticationPolicy", identity, bound, True, target=policy["Name"]
    )


# ------------------------------------------------------------------------- organization
def _get_organization_config(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    return CmdletResult(
        items=[engine.organization_object()], render=engine.render_plain, limit=None
    )


def _set_organization_config(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    if "DefaultAuthenticationPolicy" not in bound:
        return engine.write_result("Set-OrganizationConfig", state.domain, bound, False)
    value = bound["DefaultAuthenticationPolicy"]
    guid: str | None = None
    if value is not None:
        guid = engine.resolve_policy(_identity("DefaultAuthenticationPolicy", value))["Guid"]
        guid = guid.lower()
    if _dry_run(bound):
        return _confirmation("Setting organization configuration", state.domain)
    before = state.organization.get("DefaultAuthenticationPolicy")
    changed = (before or None) != guid
    if changed:
        state.organization["DefaultAuthenticationPolicy"] = guid
        state.organization["WhenChanged"] = now_text()
    return engine.write_result("Set-OrganizationConfig", state.domain, bound, changed)


def _get_transport_config(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    return CmdletResult(items=[engine.transport_object()], render=engine.render_plain, limit=None)


def _set_transport_config(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    transport = engine.state.transport
    if _dry_run(bound):
        return _confirmation("Setting transport configuration", "Transport Settings")
    changed = False
    if "SmtpClientAuthenticationDisabled" in bound:
        value = _switch(
            "SmtpClientAuthenticationDisabled", bound["SmtpClientAuthenticationDisabled"]
        )
        changed = transport["SmtpClientAuthenticationDisabled"] != value
        transport["SmtpClientAuthenticationDisabled"] = value
    return engine.write_result("Set-TransportConfig", "Transport Settings", bound, changed)


# --------------------------------------------------------------------------------- users
def _get_user(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    result_size = _result_size(bound.get("ResultSize"))
    candidates: list[dict[str, Any]] = state.users
    if bound.get("Identity") is not None:
        identity = _identity("Identity", bound["Identity"])
        user = state.find_user(
            identity, allow_external_id=engine.settings.accept_external_directory_object_id
        )
        if user is not None:
            candidates = [user]
        elif not engine.settings.missing_identity_returns_all:
            raise wire.not_found(identity)
        # else: Microsoft's caution on Get-User -Identity <missing>: every object comes back
    types = None
    if bound.get("RecipientTypeDetails") is not None:
        types = _enum_list(
            "RecipientTypeDetails",
            bound["RecipientTypeDetails"],
            USER_RECIPIENT_TYPE_DETAILS,
            "Microsoft.Exchange.Data.Directory.Recipient.RecipientTypeDetails",
        )
    predicate = None
    if bound.get("Filter") is not None:
        if engine.settings.user_filters == "refused":
            raise wire.invalid_filter(str(bound["Filter"]), 0)
        predicate, plan = compile_indexed(bound["Filter"], engine.user_getters())
        if plan is not None and candidates is state.users:
            # Only UPN prefixes (a partitioned read): the sorted index, not a scan of everyone.
            index = state.upn_index()
            candidates, predicate = index.select(plan(index)), None
    if types is not None or predicate is not None:
        candidates = [
            u
            for u in candidates
            if (types is None or u["RecipientTypeDetails"] in types)
            and (predicate is None or predicate(u))
        ]
    if bound.get("SortBy"):
        key = str(bound["SortBy"]).lstrip("+-")
        reverse = str(bound["SortBy"]).startswith("-")
        getters = engine.user_getters()
        getter = getters.get(key.lower())
        if getter is None:
            raise wire.bad_value("SortBy", bound["SortBy"], "System.String")
        candidates = sorted(
            candidates, key=lambda u: str(getter[1](u) or "").lower(), reverse=reverse
        )
    elif engine.settings.user_order == "upn" and len(candidates) > 1:
        candidates = sorted(candidates, key=lambda u: str(u["UserPrincipalName"]).lower())
    return CmdletResult(items=candidates, render=engine.render_user, limit=result_size)


def _set_user(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    identity = _identity("Identity", bound["Identity"])
    user = engine.resolve_user(identity)
    new_policy: str | None = user["_policy"]
    if (
        "AuthenticationPolicy" in bound
        and user["RecipientTypeDetails"] in engine.settings.set_user_refuses
    ):
        raise wire.authentication_policy_refused(identity, user["RecipientTypeDetails"])
    if "AuthenticationPolicy" in bound:
        value = bound["AuthenticationPolicy"]
        if value is None or (isinstance(value, str) and value.strip() == ""):
            new_policy = None
        else:
            new_policy = engine.resolve_policy(_identity("AuthenticationPolicy", value))["Guid"]
            new_policy = new_policy.lower()
    new_sts = user["StsRefreshTokensValidFrom"]
    sts_key = "STSRefreshTokensValidFrom"
    if sts_key in bound:
        raw = bound[sts_key]
        if raw is None:
            new_sts = None
        else:
            try:
                if not isinstance(raw, str):
                    raise ValueError
                new_sts = wire.format_date(wire.parse_date(raw))
            except ValueError:
                raise wire.bad_value(sts_key, raw, "System.DateTime") from None
    attributes = {
        k: bound[k]
        for k in (
            "Department",
            "Company",
            "Office",
            "Title",
            "City",
            "CountryOrRegion",
            "DisplayName",
            "FirstName",
            "LastName",
        )
        if k in bound
    }
    for key, value in attributes.items():
        if value is not None and not isinstance(value, str):
            raise wire.bad_value(key, value, "System.String")
    if _dry_run(bound):
        return _confirmation("Setting user", user["Name"])
    changed = False
    if new_policy != user["_policy"]:
        user["_policy"] = new_policy
        changed = True
    if sts_key in bound:
        # Setting the refresh-token time is a change even to an equal value: it revokes sessions.
        user["StsRefreshTokensValidFrom"] = new_sts
        changed = True
    for key, value in attributes.items():
        if user.get(key) != (value or ""):
            user[key] = value or ""
            changed = True
    if changed:
        user["WhenChanged"] = now_text()
    return engine.write_result(
        "Set-User", identity, bound, changed, target=user["UserPrincipalName"]
    )


# ------------------------------------------------------------------------ recipients/groups
def _recipient_getters() -> Getters:
    getters = field_getters(
        [
            "Name",
            "DisplayName",
            "RecipientType",
            "RecipientTypeDetails",
            "Department",
            "Company",
            "Office",
            "City",
            "CountryOrRegion",
            "Title",
            "ExternalDirectoryObjectId",
            "Alias",
        ]
    )
    getters["primarysmtpaddress"] = (
        "PrimarySmtpAddress",
        lambda r: r.get("PrimarySmtpAddress") or r.get("WindowsEmailAddress"),
    )
    return getters


def _is_recipient(user: dict[str, Any]) -> bool:
    return user["RecipientType"] != "User"


def _get_recipient(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    if bound.get("Identity") is not None:
        identity = _identity("Identity", bound["Identity"])
        found = state.find_recipient(identity)
        if found is not None:
            candidates: list[dict[str, Any]] = [found]
        elif engine.settings.missing_identity_returns_all:
            candidates = [u for u in state.users if _is_recipient(u)] + state.groups
        else:
            raise wire.not_found(identity)
    else:
        candidates = [u for u in state.users if _is_recipient(u)] + state.groups
    filters: list[Callable[[dict[str, Any]], bool]] = []
    if bound.get("RecipientTypeDetails") is not None:
        wanted = _enum_list(
            "RecipientTypeDetails",
            bound["RecipientTypeDetails"],
            RECIPIENT_TYPE_DETAILS,
            "Microsoft.Exchange.Data.Directory.Recipient.RecipientTypeDetails",
        )
        filters.append(lambda r: r["RecipientTypeDetails"] in wanted)
    if bound.get("RecipientType") is not None:
        kinds = _enum_list(
            "RecipientType",
            bound["RecipientType"],
            RECIPIENT_TYPES,
            "Microsoft.Exchange.Data.Directory.Recipient.RecipientType",
        )
        filters.append(lambda r: r["RecipientType"] in kinds)
    if bound.get("Filter") is not None:
        filters.append(compile_filter(bound["Filter"], _recipient_getters()))
    if filters:
        candidates = [r for r in candidates if all(f(r) for f in filters)]
    return _page_of(candidates, engine.render_recipient, bound)


def _resolve_group(engine: CmdletEngine, identity: str, *, unified: bool) -> dict[str, Any]:
    group = engine.state.find_group(identity)
    if group is None or (group["RecipientTypeDetails"] == "GroupMailbox") != unified:
        raise wire.not_found(identity)
    return group


def _members(engine: CmdletEngine, group: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for guid in group.get("members", []):
        member = engine.state.recipient_by_guid(guid)
        if member is not None:
            out.append(member)
    return out


def _get_distribution_group_member(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    group = _resolve_group(engine, _identity("Identity", bound["Identity"]), unified=False)
    return _page_of(_members(engine, group), engine.render_recipient, bound)


def _get_unified_group_links(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    link = _enum_list(
        "LinkType",
        bound["LinkType"],
        LINK_TYPES,
        "Microsoft.Exchange.Management.RecipientTasks.LinkType",
    )
    group = _resolve_group(engine, _identity("Identity", bound["Identity"]), unified=True)
    if link == {"Members"}:
        members = _members(engine, group)
    elif link == {"Owners"}:
        members = [m for g in group.get("owners", []) if (m := engine.state.recipient_by_guid(g))]
    else:
        members = []
    return _page_of(members, engine.render_recipient, bound)


def _get_cas_mailbox(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    state = engine.state
    candidates = state.users  # the mailboxes among them, below
    if bound.get("Identity") is not None:
        identity = _identity("Identity", bound["Identity"])
        user = state.find_user(identity, allow_external_id=False)
        if user is not None and user["RecipientTypeDetails"] in MAILBOX_TYPES:
            candidates = [user]
        elif not engine.settings.missing_identity_returns_all:
            raise wire.not_found(identity)
        # else: as Get-User's caution on a missing identity, every mailbox comes back
    if bound.get("Filter") is not None:
        if engine.settings.mailbox_filters == "refused":
            raise wire.invalid_filter(str(bound["Filter"]), 0)
        getters = field_getters(["Name", "DisplayName", "ExternalDirectoryObjectId"])
        getters["smtpclientauthenticationdisabled"] = (
            "SmtpClientAuthenticationDisabled",
            lambda u: u["_smtp_disabled"],
        )
        predicate, plan = compile_indexed(bound["Filter"], getters, "Name")
        if plan is not None and candidates is state.users:
            # Only Name prefixes (a partitioned read): the sorted index, not a scan of everyone.
            index = state.name_index()
            candidates = index.select(plan(index))
        else:
            candidates = [u for u in candidates if predicate(u)]
    candidates = [u for u in candidates if u["RecipientTypeDetails"] in MAILBOX_TYPES]
    if engine.settings.user_order == "upn" and len(candidates) > 1:
        # As Get-User's: no order is documented; by name, a first page is no sample.
        candidates = sorted(candidates, key=lambda u: str(u["Name"]).lower())
    return _page_of(candidates, engine.render_cas, bound)


def _set_cas_mailbox(engine: CmdletEngine, bound: dict[str, Any]) -> CmdletResult:
    identity = _identity("Identity", bound["Identity"])
    user = engine.state.find_user(identity, allow_external_id=False)
    if user is None or user["RecipientTypeDetails"] not in MAILBOX_TYPES:
        raise wire.not_found(identity)
    value: bool | None = user["_smtp_disabled"]
    if "SmtpClientAuthenticationDisabled" in bound:
        raw = bound["SmtpClientAuthenticationDisabled"]
        value = None if raw is None else _switch("SmtpClientAuthenticationDisabled", raw)
    if _dry_run(bound):
        return _confirmation("Setting CAS mailbox", user["Name"])
    changed = value != user["_smtp_disabled"]
    user["_smtp_disabled"] = value
    return engine.write_result(
        "Set-CASMailbox", identity, bound, changed, target=user["UserPrincipalName"]
    )


_SPECS = (
    CmdletSpec(
        "Get-AuthenticationPolicy",
        False,
        ("Identity", "AllowLegacyExchangeTokens", "TenantId"),
        (),
        _get_authentication_policy,
    ),
    CmdletSpec(
        "New-AuthenticationPolicy",
        True,
        ("Name", *PROTOCOL_SWITCHES, "TenantId"),
        ("Name",),
        _new_authentication_policy,
    ),
    CmdletSpec(
        "Set-AuthenticationPolicy",
        True,
        (
            "Identity",
            *PROTOCOL_SWITCHES,
            "AllowLegacyExchangeTokens",
            "BlockLegacyExchangeTokens",
            "TenantId",
        ),
        ("Identity",),
        _set_authentication_policy,
    ),
    CmdletSpec(
        "Remove-AuthenticationPolicy",
        True,
        ("Identity", "AllowLegacyExchangeTokens", "TenantId"),
        ("Identity",),
        _remove_authentication_policy,
    ),
    CmdletSpec("Get-OrganizationConfig", False, ("Identity",), (), _get_organization_config),
    CmdletSpec(
        "Set-OrganizationConfig",
        True,
        ("DefaultAuthenticationPolicy",),
        (),
        _set_organization_config,
    ),
    CmdletSpec(
        "Get-User",
        False,
        (
            "Identity",
            "Filter",
            "ResultSize",
            "RecipientTypeDetails",
            "SortBy",
            "OrganizationalUnit",
        ),
        (),
        _get_user,
    ),
    CmdletSpec(
        "Set-User",
        True,
        (
            "Identity",
            "AuthenticationPolicy",
            "STSRefreshTokensValidFrom",
            "Department",
            "Company",
            "Office",
            "Title",
            "City",
            "CountryOrRegion",
            "DisplayName",
            "FirstName",
            "LastName",
        ),
        ("Identity",),
        _set_user,
        recipient_write=True,
    ),
    CmdletSpec(
        "Get-Recipient",
        False,
        ("Identity", "Filter", "ResultSize", "RecipientTypeDetails", "RecipientType"),
        (),
        _get_recipient,
    ),
    CmdletSpec(
        "Get-DistributionGroupMember",
        False,
        ("Identity", "ResultSize"),
        ("Identity",),
        _get_distribution_group_member,
    ),
    CmdletSpec(
        "Get-UnifiedGroupLinks",
        False,
        ("Identity", "LinkType", "ResultSize"),
        ("Identity", "LinkType"),
        _get_unified_group_links,
    ),
    CmdletSpec("Get-TransportConfig", False, ("Identity",), (), _get_transport_config),
    CmdletSpec(
        "Set-TransportConfig",
        True,
        ("SmtpClientAuthenticationDisabled",),
        (),
        _set_transport_config,
    ),
    CmdletSpec(
        "Get-CASMailbox",
        False,
        ("Identity", "Filter", "ResultSize"),
        (),
        _get_cas_mailbox,
    ),
    CmdletSpec(
        "Set-CASMailbox",
        True,
        ("Identity", "SmtpClientAuthenticationDisabled"),
        ("Identity",),
        _set_cas_mailbox,
        recipient_write=True,
    ),
)
