"""The tenant: users, groups, policies, org and transport config, with lookup indexes.

Records are plain dicts (cheap to copy, trivially JSON). Users carry their wire fields plus a few
internal keys starting with "_" (the direct policy link as a policy GUID, per-mailbox SMTP AUTH
override). A policy link is stored by GUID, not by name, so that "orphan" removal leaves a
dangling link exactly like an AD link to a deleted object would.

All mutation happens under `TenantState.lock` (one lock; writes are tiny).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reconciler.emulator.filters import PrefixIndex
from reconciler.emulator.pki import write_atomic
from reconciler.emulator.wire import format_date

STATE_FORMAT = 1

PROTOCOL_SWITCHES = (
    "AllowBasicAuthActiveSync",
    "AllowBasicAuthAutodiscover",
    "AllowBasicAuthImap",
    "AllowBasicAuthMapi",
    "AllowBasicAuthOfflineAddressBook",
    "AllowBasicAuthOutlookService",
    "AllowBasicAuthPop",
    "AllowBasicAuthPowershell",
    "AllowBasicAuthReportingWebServices",
    "AllowBasicAuthRpc",
    "AllowBasicAuthSmtp",
    "AllowBasicAuthWebServices",
)
MAILBOX_TYPES = frozenset({"UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox"})
RECIPIENT_TYPE = {
    "UserMailbox": "UserMailbox",
    "SharedMailbox": "UserMailbox",
    "RoomMailbox": "UserMailbox",
    "EquipmentMailbox": "UserMailbox",
    "MailUser": "MailUser",
    "GuestMailUser": "MailUser",
    "User": "User",
    "DisabledUser": "User",
}
GROUP_RECIPIENT_TYPE = {
    "MailUniversalDistributionGroup": "MailUniversalDistributionGroup",
    "MailUniversalSecurityGroup": "MailUniversalSecurityGroup",
    "GroupMailbox": "MailUniversalDistributionGroup",
}
EXCHANGE_VERSION = "0.20 (15.0.0.0)"
_SERVER_DC = "DC=EMU01A001,DC=PROD,DC=OUTLOOK,DC=COM"


_DN_SPECIAL = re.compile(r'[,+"\\<>;=#]')


def escape_dn(name: str) -> str:
    """Escape a name for use as an RDN value."""
    if not _DN_SPECIAL.search(name):
        return name
    out = []
    for ch in name:
        if ch in ',+"\\<>;=#':
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def user_dn(name: str, domain: str) -> str:
    """DN of a recipient in the hosted organization."""
    return (
        f"CN={escape_dn(name)},OU={domain},OU=Microsoft Exchange Hosted Organizations,{_SERVER_DC}"
    )


def policy_dn(name: str, domain: str) -> str:
    """DN of an authentication policy (reference semantics §1.5)."""
    return (
        f"CN={escape_dn(name)},CN=Auth Policies,CN=Configuration,CN={domain},"
        f"CN=ConfigurationUnits,{_SERVER_DC}"
    )


class TenantState:
    """The whole tenant plus the indexes the cmdlets need."""

    def __init__(self, data: dict[str, Any]) -> None:
        """Index `data` (a state dict); takes ownership of its user, group and policy records."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported tenant state format {data.get('format')!r}")
        self.lock = threading.RLock()
        self.tenant_id: str = data["tenant"]["id"]
        self.domain: str = data["tenant"]["domain"]
        self.display_name: str = data["tenant"].get("display_name", "Contoso")
        self.organization: dict[str, Any] = dict(data["organization"])
        default = self.organization.get("DefaultAuthenticationPolicy")
        self.organization["DefaultAuthenticationPolicy"] = (
            default.lower() if isinstance(default, str) else None
        )
        self.transport: dict[str, Any] = dict(data["transport"])
        self.policies: dict[str, dict[str, Any]] = {}
        self.users: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self._user_index: dict[str, dict[str, Any]] = {}
        self._user_by_external_id: dict[str, dict[str, Any]] = {}
        self._group_index: dict[str, dict[str, Any]] = {}
        self._recipient_by_guid: dict[str, dict[str, Any]] = {}
        self._policy_index: dict[str, str] = {}
        self._upn_index: PrefixIndex | None = None  # built on demand, dropped on add/remove
        self._name_index: PrefixIndex | None = None  # the same, by Name (Get-CASMailbox)
        for policy in data["policies"]:
            self.add_policy(policy)
        for user in data["users"]:
            self.add_user(user)
        for group in data["groups"]:
            self.add_group(group)

    # ---------------------------------------------------------------- indexes
    def add_user(self, user: dict[str, Any]) -> None:
        """Add a user record and index it by name, UPN, DN and GUID."""
        link = user.get("_policy")
        user["_policy"] = link.lower() if isinstance(link, str) else None  # links compare lowercase
        user.setdefault("_smtp_disabled", None)
        user.setdefault("StsRefreshTokensValidFrom", None)
        self.users.append(user)
        self._upn_index = self._name_index = None
        for key in (
            user["Name"],
            user["UserPrincipalName"],
            user["DistinguishedName"],
            user["Guid"],
        ):
            self._user_index[key.lower()] = user
        self._user_by_external_id[user["ExternalDirectoryObjectId"].lower()] = user
        self._recipient_by_guid[user["Guid"].lower()] = user

    def remove_user(self, identity: str) -> dict[str, Any] | None:
        """Delete a user (as Entra does): out of every index and every group; None if absent."""
        user = self.find_user(identity, allow_external_id=True)
        if user is None:
            return None
        self.users.remove(user)
        self._upn_index = self._name_index = None
        for key in (user["Name"], user["UserPrincipalName"], user["DistinguishedName"]):
            self._user_index.pop(key.lower(), None)
        guid = user["Guid"].lower()
        self._user_index.pop(guid, None)
        self._user_by_external_id.pop(user["ExternalDirectoryObjectId"].lower(), None)
        self._recipient_by_guid.pop(guid, None)
        for group in self.groups:
            for role in ("members", "owners"):
                if role in group:
                    group[role] = [g for g in group[role] if g.lower() != guid]
        return user

    def add_group(self, group: dict[str, Any]) -> None:
        """Add a group and index it by name, DN, GUID and address."""
        self.groups.append(group)
        for key in (
            group["Name"],
            group["DisplayName"],
            group["DistinguishedName"],
            group["Guid"],
            group["PrimarySmtpAddress"],
            group["ExternalDirectoryObjectId"],
        ):
            self._group_index.setdefault(key.lower(), group)
        self._recipient_by_guid[group["Guid"].lower()] = group

    def add_policy(self, policy: dict[str, Any]) -> None:
        """Add a policy (its DN is derived from the name)."""
        policy["DistinguishedName"] = policy_dn(policy["Name"], self.domain)
        self.policies[policy["Guid"].lower()] = policy
        self._reindex_policies()

    def remove_policy(self, guid: str) -> None:
        """Drop a policy (links to it are the caller's business)."""
        del self.policies[guid.lower()]
        self._reindex_policies()

    def _reindex_policies(self) -> None:
        index: dict[str, str] = {}
        for guid, policy in self.policies.items():
            index[policy["Name"].lower()] = guid
            index[policy["DistinguishedName"].lower()] = guid
            index[guid] = guid
        self._policy_index = index

    # ---------------------------------------------------------------- lookups
    def upn_index(self) -> PrefixIndex:
        """The users sorted by UserPrincipalName, for prefix filters (rebuilt after a change)."""
        index = self._upn_index
        if index is None:
            index = self._upn_index = PrefixIndex(self.users, lambda u: u["UserPrincipalName"])
        return index

    def name_index(self) -> PrefixIndex:
        """The users sorted by Name, for Get-CASMailbox prefix filters (rebuilt after a change)."""
        index = self._name_index
        if index is None:
            index = self._name_index = PrefixIndex(self.users, lambda u: u["Name"])
        return index

    def find_user(self, identity: str, *, allow_external_id: bool) -> dict[str, Any] | None:
        """Resolve a user by name, UPN, DN or GUID (and Entra object id when allowed)."""
        key = identity.strip().lower()
        user = self._user_index.get(key)
        if user is None and allow_external_id:
            user = self._user_by_external_id.get(key)
        return user

    def find_user_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        """Resolve a user by ExternalDirectoryObjectId (for filters)."""
        return self._user_by_external_id.get(external_id.strip().lower())

    def find_group(self, identity: str) -> dict[str, Any] | None:
        """Resolve a group by name, display name, DN, GUID or address."""
        return self._group_index.get(identity.strip().lower())

    def find_recipient(self, identity: str) -> dict[str, Any] | None:
        """A user that is a recipient, or a group."""
        user = self.find_user(identity, allow_external_id=False)
        if user is not None and user["RecipientType"] != "User":
            return user
        if user is None:
            key = identity.strip().lower()
            for candidate in (self._user_by_external_id.get(key),):
                if candidate is not None and candidate["RecipientType"] != "User":
                    return candidate
        return self.find_group(identity)

    def recipient_by_guid(self, guid: str) -> dict[str, Any] | None:
        """User or group by its Exchange GUID."""
        return self._recipient_by_guid.get(guid.lower())

    def find_policy(self, identity: str) -> dict[str, Any] | None:
        """Resolve a policy by name, DN or GUID (case-insensitive)."""
        guid = self._policy_index.get(identity.strip().lower())
        return self.policies.get(guid) if guid else None

    def policy_name_of(self, guid: str | None) -> str | None:
        """Wire value of a policy link: the name, or the bare GUID of a deleted policy."""
        if guid is None:
            return None
        policy = self.policies.get(guid)
        return policy["Name"] if policy is not None else guid

    def policy_reference(self, guid: str | None, form: str) -> Any:
        """Wire value of a policy link in `form` (name | dn | guid | object).

        A deleted policy's link is its bare GUID in every form: it names nothing, and a client
        must never take it for a re-created namesake.
        """
        if guid is None:
            return None
        policy = self.policies.get(guid)
        if policy is None:
            return guid
        if form == "dn":
            return policy["DistinguishedName"]
        if form == "guid":
            return policy["Guid"]
        if form == "object":
            return {
                "Name": policy["Name"],
                "DistinguishedName": policy["DistinguishedName"],
                "ObjectGuid": policy["Guid"],
            }
        return policy["Name"]

    def policy_dn_of(self, guid: str | None) -> str | None:
        """DN of a linked policy (a deleted one keeps a DN-shaped GUID, matching nothing)."""
        if guid is None:
            return None
        policy = self.policies.get(guid)
        return policy["DistinguishedName"] if policy is not None else f"<GUID={guid}>"

    def users_holding(self, guid: str) -> list[dict[str, Any]]:
        """Users whose direct link points at the policy."""
        return [u for u in self.users if u["_policy"] == guid]

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dump of the tenant (the state file format)."""
        with self.lock:
            return {
                "format": STATE_FORMAT,
                "tenant": {
                    "id": self.tenant_id,
                    "domain": self.domain,
                    "display_name": self.display_name,
                },
                "organization": dict(self.organization),
                "transport": dict(self.transport),
                "policies": [
                    {k: v for k, v in p.items() if k != "DistinguishedName"}
                    for p in self.policies.values()
                ],
                "users": [dict(u) for u in self.users],
                "groups": [dict(g) for g in self.groups],
            }

    def save(self, path: Path) -> None:
        """Write the state file atomically (temp file + rename)."""
        data = json.dumps(self.to_dict(), indent=1, sort_keys=True).encode("utf-8")
        write_atomic(path, data + b"\n", 0o644)

    @classmethod
    def load(cls, path: Path) -> TenantState:
        """Read a state file; ValueError with a one-line reason when it is not one."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read tenant state {path}: {exc}") from exc
        try:
            return cls(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"tenant state {path} is malformed: missing {exc}") from exc


def now_text() -> str:
    """The current time in Exchange's date format."""
    return format_date(dt.datetime.now(dt.UTC))


def new_policy_record(
    name: str, switches: dict[str, bool], *, guid: str | None = None, when: str | None = None
) -> dict[str, Any]:
    """A policy as stored: every switch False unless given (New-AuthenticationPolicy)."""
    stamp = when or now_text()
    record: dict[str, Any] = {"Name": name, "Guid": guid or str(uuid.uuid4())}
    for switch in PROTOCOL_SWITCHES:
        record[switch] = bool(switches.get(switch, False))
    record["WhenCreated"] = stamp
    record["WhenChanged"] = stamp
    return record


def member_guids(group: dict[str, Any]) -> Iterable[str]:
    """GUIDs of a group's direct members."""
    return group.get("members", [])
