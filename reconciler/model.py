"""Value types shared by every part of authpolicy.

Everything here is immutable plain data: the desired state read from policies.yaml, the
snapshot read from the tenant, and the changes a plan is made of. Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, TypeAlias


class ExitCode(IntEnum):
    """Exit codes shared by every verb (DESIGN.md, CLI)."""

    OK = 0
    ERROR = 1
    CHANGES = 2  # changes pending (plan --detailed-exitcode) or drift found (drift)
    BLOCKED = 3  # blocked by a safety guard


# --------------------------------------------------------------------------- protocols


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    """One of the 12 protocols an authentication policy has a Basic-auth switch for."""

    name: str  # short name used in policies.yaml, e.g. "smtp"
    switch: str  # Exchange parameter/property, e.g. "AllowBasicAuthSmtp"
    description: str
    still_effective: bool  # does allowing Basic auth on it still change anything in EXO (2026)?


PROTOCOLS: tuple[ProtocolInfo, ...] = (
    ProtocolInfo(
        "activesync", "AllowBasicAuthActiveSync", "Exchange ActiveSync (mobile mail)", False
    ),
    ProtocolInfo("autodiscover", "AllowBasicAuthAutodiscover", "Autodiscover", False),
    ProtocolInfo("imap", "AllowBasicAuthImap", "IMAP4", False),
    ProtocolInfo("mapi", "AllowBasicAuthMapi", "MAPI over HTTP (Outlook for Windows)", False),
    ProtocolInfo(
        "offline_address_book", "AllowBasicAuthOfflineAddressBook", "Offline Address Book", False
    ),
    ProtocolInfo(
        "outlook_service",
        "AllowBasicAuthOutlookService",
        "Outlook service (Mail & Calendar)",
        False,
    ),
    ProtocolInfo("pop", "AllowBasicAuthPop", "POP3", False),
    ProtocolInfo("powershell", "AllowBasicAuthPowershell", "Remote PowerShell", False),
    ProtocolInfo(
        "reporting_web_services",
        "AllowBasicAuthReportingWebServices",
        "Reporting Web Services",
        False,
    ),
    ProtocolInfo("rpc", "AllowBasicAuthRpc", "Outlook Anywhere (RPC over HTTP)", False),
    ProtocolInfo(
        "smtp", "AllowBasicAuthSmtp", "Authenticated SMTP client submission (SMTP AUTH)", True
    ),
    ProtocolInfo("web_services", "AllowBasicAuthWebServices", "Exchange Web Services (EWS)", False),
)
PROTOCOL_NAMES: tuple[str, ...] = tuple(p.name for p in PROTOCOLS)
PROTOCOL_BY_NAME: Mapping[str, ProtocolInfo] = {p.name: p for p in PROTOCOLS}
PROTOCOL_BY_SWITCH: Mapping[str, ProtocolInfo] = {p.switch: p for p in PROTOCOLS}

# A policy's switches as the set of protocols that still allow Basic auth; all others block.
Allowed: TypeAlias = frozenset[str]


def switches_of(allowed: Allowed) -> dict[str, bool]:
    """All 12 switches, in canonical order, as {short name: allowed}."""
    return {name: name in allowed for name in PROTOCOL_NAMES}


# --------------------------------------------------------------------------- desired state


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where in policies.yaml a value was written (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A declared policy: its name and the protocols that keep Basic auth."""

    name: str
    allow: Allowed
    location: SourceLocation | None = None


MATCH_KEYS: tuple[str, ...] = (
    "users",
    "upn",
    "domain",
    "department",
    "company",
    "office",
    "title",
    "city",
    "country",
    "recipient_type",
    "member_of",
)


@dataclass(frozen=True, slots=True)
class MatchSpec:
    """A rule's `match` or `except`: AND across keys, OR within one key's list.

    An empty tuple means "this key does not constrain". `match_all` is `match: all`.
    Strings are kept as written; comparisons are case-insensitive (done by the planner).
    """

    match_all: bool = False
    users: tuple[str, ...] = ()
    upn: tuple[str, ...] = ()  # globs
    domain: tuple[str, ...] = ()
    department: tuple[str, ...] = ()
    company: tuple[str, ...] = ()
    office: tuple[str, ...] = ()
    title: tuple[str, ...] = ()
    city: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    recipient_type: tuple[str, ...] = ()
    member_of: tuple[str, ...] = ()  # group names; nested groups are expanded


# --------------------------------------------------------------------------- SMTP AUTH

# A mailbox's SMTP AUTH setting (Set-CASMailbox -SmtpClientAuthenticationDisabled $false | $true
# | $null): enabled, disabled, or follow the organization.
SmtpSetting: TypeAlias = Literal["enabled", "disabled", "organization"]
SMTP_SETTINGS: tuple[SmtpSetting, ...] = ("enabled", "disabled", "organization")
# The organization's (Set-TransportConfig -SmtpClientAuthenticationDisabled $false | $true).
OrgSmtp: TypeAlias = Literal["enabled", "disabled"]
ORG_SMTP_SETTINGS: tuple[OrgSmtp, ...] = ("enabled", "disabled")
# Whether a mailbox can submit mail with Basic SMTP AUTH (round2-facts.md §1).
BasicSmtp: TypeAlias = Literal["allowed", "blocked", "unknown"]


def smtp_setting_of(disabled: bool | None) -> SmtpSetting:
    """Get-CASMailbox SmtpClientAuthenticationDisabled as a setting ($null: organization)."""
    if disabled is None:
        return "organization"
    return "disabled" if disabled else "enabled"


def smtp_disabled_value(setting: SmtpSetting) -> bool | None:
    """The value Set-CASMailbox -SmtpClientAuthenticationDisabled takes for a setting."""
    return {"enabled": False, "disabled": True, "organization": None}[setting]


def smtp_auth_effective(setting: SmtpSetting | None, org: OrgSmtp | None) -> OrgSmtp | None:
    """Is SMTP AUTH on for a mailbox: its own setting, else the organization's (None: unknown)."""
    if setting == "enabled" or setting == "disabled":
        return setting
    return org


def basic_smtp(
    policy_allows_smtp: bool, setting: SmtpSetting | None, org: OrgSmtp | None, *, mailbox: bool
) -> BasicSmtp:
    """THE definition of effective Basic SMTP (plan, report and export all use this one).

    Allowed only when the effective authentication policy allows smtp AND SMTP AUTH is
    effective for the mailbox (its own setting, else the organization's). A recipient without
    a mailbox submits nothing. SMTP AUTH on with a policy that blocks Basic smtp is OAuth-only
    submission: blocked for Basic. Unknown when the organization's value is not visible.
    """
    if not policy_allows_smtp or not mailbox:
        return "blocked"
    effective = smtp_auth_effective(setting, org)
    if effective is None:
        return "unknown"
    return "allowed" if effective == "enabled" else "blocked"


@dataclass(frozen=True, slots=True)
class SmtpAuthSpec:
    """policies.yaml `smtp_auth`: the organization switch, and mailboxes no rule sets."""

    organization: OrgSmtp | None = None  # None: leave the organization's setting as it is
    unmatched: Literal["ignore", "organization"] = "ignore"


@dataclass(frozen=True, slots=True)
class Rule:
    """An assignment rule: users that match (and are not excepted) get `policy` directly.

    `policy` None means "no direct policy": the organization default applies. `smtp_auth`
    None leaves the mailboxes' SMTP AUTH setting to `smtp_auth.unmatched`. From `expires`
    (a UTC date) on, the rule matches nobody.
    """

    name: str
    policy: str | None
    match: MatchSpec
    except_: MatchSpec | None = None
    location: SourceLocation | None = None
    smtp_auth: SmtpSetting | None = None
    owner: str | None = None
    reason: str | None = None
    expires: dt.date | None = None


UnmatchedMode: TypeAlias = Literal["ignore", "clear"]


# assignments.recipient_types when omitted: the mailbox types (docs/configuration.md). Exchange
# refuses Set-User -AuthenticationPolicy for some recipients without a mailbox.
DEFAULT_RECIPIENT_TYPES: tuple[str, ...] = (
    "UserMailbox",
    "SharedMailbox",
    "RoomMailbox",
    "EquipmentMailbox",
    "LinkedMailbox",
    "SchedulingMailbox",
)


@dataclass(frozen=True, slots=True)
class Assignments:
    unmatched: UnmatchedMode = "ignore"
    revoke_sessions: bool = True
    rules: tuple[Rule, ...] = ()
    # The RecipientTypeDetails the plan manages; users of other types are never changed.
    recipient_types: tuple[str, ...] = DEFAULT_RECIPIENT_TYPES


@dataclass(frozen=True, slots=True)
class Limit:
    """A safety threshold: an absolute count, or a percentage of a total."""

    value: float
    percent: bool = False

    def resolve(self, total: int) -> int:
        """The threshold as a count, given the total it is a percentage of."""
        if not self.percent:
            return int(self.value)
        return int(total * self.value / 100.0)

    def __str__(self) -> str:
        if self.percent:
            return f"{self.value:g}%"
        return str(int(self.value))


@dataclass(frozen=True, slots=True)
class Safety:
    max_user_changes: Limit | None = None  # None: no limit
    max_policy_deletes: Limit | None = None
    # Users a plan may block from a protocol they used with Basic auth in the evidence window.
    max_active_users_blocked: int | None = None
    # Clearing the organization default always needs --force (it is the tenant's safety net).


@dataclass(frozen=True, slots=True)
class DesiredState:
    """policies.yaml, loaded and validated."""

    version: int
    tenant: str | None
    policies: tuple[PolicySpec, ...]
    remove_policies: tuple[str, ...] = ()
    prune_policies: bool = False
    manage_default: bool = False  # False: `default_policy` omitted, leave the default as it is
    default_policy: str | None = None  # with manage_default: a declared name, or None to clear
    assignments: Assignments = field(default_factory=Assignments)
    safety: Safety = field(default_factory=Safety)
    smtp_auth: SmtpAuthSpec = field(default_factory=SmtpAuthSpec)
    # evidence.sign_in_logs.days: the Entra sign-in window to read (None: not asked for).
    sign_in_days: int | None = None
    source: str = "policies.yaml"
    # The parsed document as plain JSON-able data, for the plan fingerprint.
    canonical: Mapping[str, object] = field(default_factory=dict)
    # Where top-level settings were written ("default_policy", "smtp_auth.organization", ...):
    # findings about them (SARIF, baseline checks) point there.
    locations: Mapping[str, SourceLocation] = field(default_factory=dict, compare=False)

    def location_of(self, *keys: str) -> SourceLocation | None:
        """The first of these dotted keys the file wrote, else None."""
        for key in keys:
            if key in self.locations:
                return self.locations[key]
        return None

    @property
    def manages_mailboxes(self) -> bool:
        """Does the file set any mailbox's SMTP AUTH (so Get-CASMailbox must be read)?"""
        return self.smtp_auth.unmatched == "organization" or any(
            rule.smtp_auth is not None for rule in self.assignments.rules
        )

    @property
    def manages_smtp(self) -> bool:
        """Does the file set the organization's or any mailbox's SMTP AUTH?"""
        return self.smtp_auth.organization is not None or self.manages_mailboxes

    @property
    def evidence_days(self) -> int | None:
        """Days of sign-ins to read: the file's window, else 30 when the guard needs them."""
        if self.sign_in_days is not None:
            return self.sign_in_days
        return DEFAULT_SIGN_IN_DAYS if self.safety.max_active_users_blocked is not None else None

    def policy(self, name: str) -> PolicySpec | None:
        """The declared policy with this name, compared case-insensitively."""
        folded = name.casefold()
        for spec in self.policies:
            if spec.name.casefold() == folded:
                return spec
        return None


# --------------------------------------------------------------------------- evidence

# The Entra sign-in log keeps 30 days (P1/P2); a window longer than that reads nothing more.
DEFAULT_SIGN_IN_DAYS = 30
MAX_SIGN_IN_DAYS = 30
# clientAppUsed of a Basic/legacy sign-in -> the policy switch it maps to (round2-facts.md §2).
CLIENT_APP_PROTOCOL: Mapping[str, str] = {
    "Exchange ActiveSync": "activesync",
    "AutoDiscover": "autodiscover",
    "IMAP4": "imap",
    "MAPI Over HTTP": "mapi",
    "Offline Address Book": "offline_address_book",
    "Outlook Service": "outlook_service",
    "POP3": "pop",
    "Exchange Online PowerShell": "powershell",
    "Reporting Web Services": "reporting_web_services",
    "Outlook Anywhere (RPC over HTTP)": "rpc",
    "Authenticated SMTP": "smtp",
    "Exchange Web Services": "web_services",
}
# A legacy client Entra cannot name: reported, never mapped to a switch.
OTHER_CLIENTS = "Other clients"
OTHER = "other"  # its key in a user's uses


@dataclass(frozen=True, slots=True)
class ProtocolUse:
    """One user's Basic sign-ins on one protocol in the window."""

    count: int  # successful sign-ins
    last: str | None  # ISO time of the last successful one (None: only failures)
    failures: int = 0  # failed ones (a wrong password, a locked account), counted apart
    last_failure: str | None = None


@dataclass(frozen=True, slots=True)
class SignInUsage:
    """What the Entra sign-in log says about Basic auth, joined to the snapshot's users.

    `status` "read": `by_user` is complete for the window; "missing": it could not be read
    (`reason` says why in one line) and nothing may be concluded from its emptiness.
    """

    status: Literal["read", "missing"]
    days: int
    since: str  # ISO start of the window (UTC)
    reason: str = ""
    # TenantUser.id -> protocol (or OTHER) -> use
    by_user: Mapping[str, Mapping[str, ProtocolUse]] = field(default_factory=dict)
    events: int = 0  # legacy sign-ins read
    unjoined: int = 0  # sign-ins of users the snapshot does not hold (deleted since, guests)
    requests: int = 0  # Graph requests made (pages, retries)

    @property
    def read(self) -> bool:
        return self.status == "read"


# Conditional Access (Graph identity/conditionalAccess/policies): the legacy-authentication block.
CA_LEGACY_CLIENTS = frozenset({"exchangeActiveSync", "other"})  # Basic SMTP AUTH is "other"
EXCHANGE_APP_IDS = frozenset({"All", "Office365", "00000002-0000-0ff1-ce00-000000000000"})


@dataclass(frozen=True, slots=True)
class CaPolicy:
    """One Conditional Access policy, as much of it as the legacy-auth questions need.

    User, group and role ids are kept lower case; `include_users` may hold "All" or "None".
    """

    id: str
    name: str
    state: str  # enabled | disabled | enabledForReportingButNotEnforced
    client_app_types: frozenset[str] = frozenset()
    include_applications: frozenset[str] = frozenset()
    include_users: frozenset[str] = frozenset()
    exclude_users: frozenset[str] = frozenset()
    include_groups: frozenset[str] = frozenset()
    exclude_groups: frozenset[str] = frozenset()
    include_roles: frozenset[str] = frozenset()
    exclude_roles: frozenset[str] = frozenset()
    blocks: bool = False  # grantControls.builtInControls holds "block"

    def shapes_legacy_block(self) -> bool:
        """Blocks legacy clients (Exchange ActiveSync and other clients) for Exchange Online,
        whatever its state."""
        legacy = "all" in self.client_app_types or self.client_app_types >= CA_LEGACY_CLIENTS
        return self.blocks and legacy and bool(self.include_applications & EXCHANGE_APP_IDS)

    @property
    def blocks_legacy(self) -> bool:
        """Enforced (not report-only) and blocking legacy clients for Exchange Online."""
        return self.state == "enabled" and self.shapes_legacy_block()

    @property
    def blocks_smtp_auth(self) -> bool:
        """Enforced and blocking "other clients" (Authenticated SMTP) for Exchange Online."""
        other = "all" in self.client_app_types or "other" in self.client_app_types
        return (
            self.state == "enabled"
            and self.blocks
            and other
            and bool(self.include_applications & EXCHANGE_APP_IDS)
        )

    def covers(self, user_id: str) -> Literal["yes", "no", "maybe"]:
        """Does the policy apply to this user (Entra object id)? "maybe" when only group or
        role membership, which is not read, could tell."""
        uid = user_id.lower()
        if uid in self.exclude_users:
            return "no"
        included = "all" in {u.lower() for u in self.include_users} or uid in self.include_users
        if not included:
            return "maybe" if self.include_groups or self.include_roles else "no"
        return "maybe" if self.exclude_groups or self.exclude_roles else "yes"


@dataclass(frozen=True, slots=True)
class ConditionalAccessRead:
    """The tenant's Conditional Access policies, or why they could not be read."""

    status: Literal["read", "missing"]
    reason: str = ""
    policies: tuple[CaPolicy, ...] = ()

    @property
    def read(self) -> bool:
        return self.status == "read"


@dataclass(frozen=True, slots=True)
class ProtocolEvidence:
    """A change's evidence for one protocol it takes away: users who used it, last use."""

    users: int | None  # None: no evidence (the log could not be read)
    last: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeEvidence:
    """Per protocol a change takes away from users: who used it with Basic auth lately."""

    protocols: Mapping[str, ProtocolEvidence]
    # The users counted (not in the plan file: apply recomputes evidence from a fresh read).
    user_ids: frozenset[str] = frozenset()
    # Users the change takes a protocol away from (0: nobody is on what it changes).
    affected: int = 0


@dataclass(frozen=True, slots=True)
class UnusedAllowance:
    """A policy that allows a protocol nobody it governs used with Basic auth in the window."""

    policy: str
    protocol: str
    users: int  # users it governs after the plan
    rules: tuple[str, ...] = ()  # the rules that assign it


@dataclass(frozen=True, slots=True)
class EvidenceSummary:
    """The plan's evidence: whether it was read, and what it counts."""

    status: Literal["read", "missing"]
    days: int
    since: str
    reason: str = ""
    active_users_blocked: int = 0  # distinct users who lose a protocol they used
    unused: tuple[UnusedAllowance, ...] = ()


# --------------------------------------------------------------------------- tenant snapshot


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """An authentication policy as read from the tenant."""

    name: str
    allow: Allowed
    guid: str = ""
    distinguished_name: str = ""


@dataclass(frozen=True, slots=True)
class TenantUser:
    """A user as Get-User shows it. `policy` is the DIRECT assignment only (name or None)."""

    id: str  # ExternalDirectoryObjectId (Entra object id): stable key for writes
    upn: str
    identity: str  # Exchange Identity (the object's Name)
    recipient_type: str  # RecipientTypeDetails
    policy: str | None
    display_name: str = ""
    sts_refresh_tokens_valid_from: str | None = None
    department: str | None = None
    company: str | None = None
    office: str | None = None
    title: str | None = None
    city: str | None = None
    country: str | None = None
    # The mailbox's SMTP AUTH setting (Get-CASMailbox); None: no mailbox, or not read
    # (TenantSnapshot.mailboxes_read says which).
    smtp_auth: SmtpSetting | None = None


@dataclass(frozen=True, slots=True)
class SnapshotNeeds:
    """What a caller needs from read_snapshot beyond policies, default and users' core fields."""

    # False: policies and the default only, no user pages (2 requests; verification after apply).
    users: bool = True
    attributes: frozenset[str] = frozenset()  # department, company, office, title, city, country
    groups: frozenset[str] = frozenset()  # group names whose (nested) members are needed
    smtp_org: bool = False  # Get-TransportConfig (1 request)
    mailboxes: bool = False  # Get-CASMailbox, paged (each user's SMTP AUTH setting)
    sign_in_days: int | None = None  # Graph sign-in log of the last N days (evidence)
    conditional_access: bool = False  # Graph Conditional Access policies (Policy.Read.All)


@dataclass(frozen=True, slots=True)
class TenantSnapshot:
    """Everything read from the tenant that a plan or report is computed from."""

    tenant: str
    policies: tuple[TenantPolicy, ...]
    default_policy: str | None
    users: tuple[TenantUser, ...]
    # casefolded group name -> ids (TenantUser.id) of its members, nested groups expanded.
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Get-TransportConfig SmtpClientAuthenticationDisabled; None when not read or not shown
    # (smtp_org_read tells which: a service-side default the API does not show is unknown).
    smtp_org: OrgSmtp | None = None
    smtp_org_read: bool = False
    mailboxes_read: bool = False  # Get-CASMailbox was read: TenantUser.smtp_auth is set
    # CAS mailboxes that no Get-User object matched (ExternalDirectoryObjectId, Guid): names.
    mailboxes_without_user: tuple[str, ...] = ()
    # The Entra sign-in log (evidence), when the file asks for it; never hashed into the
    # fingerprint: evidence never makes a saved plan stale.
    sign_ins: SignInUsage | None = None
    # Get-OrganizationConfig OAuth2ClientProfileEnabled (modern authentication); None: not shown.
    modern_auth: bool | None = None
    # Conditional Access policies (Graph), when asked for; never hashed into the fingerprint.
    conditional_access: ConditionalAccessRead | None = None

    def policy(self, name: str | None) -> TenantPolicy | None:
        """The tenant policy with this name, compared case-insensitively."""
        if name is None:
            return None
        folded = name.casefold()
        for p in self.policies:
            if p.name.casefold() == folded:
                return p
        return None


def effective_policy(user: TenantUser, default_policy: str | None) -> str | None:
    """The policy that actually governs a user: the direct one, else the org default, else none."""
    return user.policy if user.policy is not None else default_policy


# --------------------------------------------------------------------------- changes and plan

ChangeKind: TypeAlias = Literal[
    "policy_create",
    "replace_resume",
    "policy_update",
    "policy_replace",
    "default_change",
    "smtp_org_change",
    "mailbox_smtp_change",
    "user_assign",
    "user_clear",
    "policy_delete",
]

# Execution phases, in order (DESIGN.md "SMTP AUTH as desired state"). `changes` in a plan
# are sorted by this.
PHASE_ORDER: Mapping[str, int] = {
    "policy_create": 0,
    "replace_resume": 1,  # an earlier replace's holding policy: finished before anything else
    "policy_update": 2,
    "policy_replace": 2,
    "default_change": 3,
    "smtp_org_change": 4,
    "mailbox_smtp_change": 5,
    "user_assign": 6,
    "user_clear": 6,
    "policy_delete": 7,
}

# A replace (remove and recreate a policy) first moves the policy's holders and the default to
# a holding policy with the same protection, so the tenant itself remembers who must go back.
HOLDING_PREFIX = "authpolicy-holding-"


def holding_name(policy: str) -> str:
    """The reserved name of the holding policy of `policy` (fits Exchange's 64 characters)."""
    digest = hashlib.sha256(policy.casefold().encode("utf-8")).hexdigest()[:16]
    return HOLDING_PREFIX + digest


@dataclass(frozen=True, slots=True)
class FieldChange:
    protocol: str  # short name
    before: bool
    after: bool


@dataclass(frozen=True, slots=True)
class PolicyCreate:
    policy: str
    after: Allowed
    weakens: bool = False
    kind: Literal["policy_create"] = "policy_create"


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    policy: str
    fields: tuple[FieldChange, ...]
    weakens: bool = False
    kind: Literal["policy_update"] = "policy_update"
    # Users whose effective policy is this one after the plan (they feel the switch change).
    affected_users: int = 0
    evidence: ChangeEvidence | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class PolicyReplace:
    """Remove and recreate a policy (--allow-replace: Set-AuthenticationPolicy is failing).

    The users that held it and the default are re-pointed at the new object.
    """

    policy: str
    fields: tuple[FieldChange, ...]
    after: Allowed
    holders: tuple[str, ...] = ()  # user ids that hold it directly, reassigned after the recreate
    is_default: bool = False  # the default names it and stays on it: restored after the recreate
    # The replace runs before the user and default changes, so users (and the default) that
    # hold it now but that the plan moves elsewhere later still hold it at remove time: they
    # are detached if Exchange refuses to remove a policy in use, and not reattached.
    moved_holders: tuple[str, ...] = ()
    default_moves: bool = False
    weakens: bool = False
    kind: Literal["policy_replace"] = "policy_replace"
    evidence: ChangeEvidence | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ReplaceResume:
    """Finish a replace an earlier apply did not: the users (and the default) on the holding
    policy go back to `policy` (created first if it is missing), then the holding policy goes."""

    policy: str
    holding: str
    holders: tuple[str, ...] = ()  # user ids on the holding policy
    default: bool = False  # the default names the holding policy
    weakens: bool = False
    kind: Literal["replace_resume"] = "replace_resume"


@dataclass(frozen=True, slots=True)
class PolicyDelete:
    policy: str
    weakens: bool = False
    kind: Literal["policy_delete"] = "policy_delete"


@dataclass(frozen=True, slots=True)
class DefaultChange:
    before: str | None
    after: str | None
    affected_users: int  # users whose effective policy changes because of this
    weakens: bool = False
    kind: Literal["default_change"] = "default_change"
    evidence: ChangeEvidence | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class UserChange:
    """user_assign (after is a name) or user_clear (after is None)."""

    kind: Literal["user_assign", "user_clear"]
    user: str  # UPN, for people
    user_id: str  # ExternalDirectoryObjectId, for writes
    before: str | None
    after: str | None
    rule: str  # rule name, or "(unmatched)"
    weakens: bool = False
    # The mailbox's effective Basic SMTP before and after the plan; None: mailbox settings
    # were not read (the file manages none), so the plan does not guess.
    basic_smtp_before: BasicSmtp | None = None
    basic_smtp_after: BasicSmtp | None = None
    evidence: ChangeEvidence | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SmtpOrgChange:
    """Set-TransportConfig -SmtpClientAuthenticationDisabled. `before` None: not visible."""

    before: OrgSmtp | None
    after: OrgSmtp
    # Mailboxes that follow the organization after the plan (None: mailboxes not read).
    affected_users: int | None = None
    weakens: bool = False
    kind: Literal["smtp_org_change"] = "smtp_org_change"
    evidence: ChangeEvidence | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class MailboxSmtpChange:
    """Set-CASMailbox -SmtpClientAuthenticationDisabled for one mailbox."""

    user: str
    user_id: str
    before: SmtpSetting
    after: SmtpSetting
    rule: str
    weakens: bool = False
    basic_smtp_before: BasicSmtp | None = None
    basic_smtp_after: BasicSmtp | None = None
    kind: Literal["mailbox_smtp_change"] = "mailbox_smtp_change"
    evidence: ChangeEvidence | None = field(default=None, compare=False)


Change: TypeAlias = (
    PolicyCreate
    | ReplaceResume
    | PolicyUpdate
    | PolicyReplace
    | PolicyDelete
    | DefaultChange
    | SmtpOrgChange
    | MailboxSmtpChange
    | UserChange
)


def changed_user_ids(changes: tuple[Change, ...] | list[Change]) -> set[str]:
    """Users a list of changes touches (a user counted once for policy and SMTP AUTH)."""
    return {c.user_id for c in changes if isinstance(c, UserChange | MailboxSmtpChange)}


@dataclass(frozen=True, slots=True)
class Guard:
    """A safety guard that blocks apply without --force. The message gives the numbers."""

    name: str  # "max_user_changes" | "max_policy_deletes" | "default_cleared"
    message: str
    count: int = 0
    limit: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """The deterministic result of planning. `changes` are in execution order."""

    tenant: str
    fingerprint: str
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = ()
    guards: tuple[Guard, ...] = ()
    # Per-input digests ("config", "policies", "default", "users", ...), so a stale saved plan
    # can say WHAT moved. The fingerprint is the hash of these.
    inputs: Mapping[str, str] = field(default_factory=dict)
    format_version: int = 1
    # The organization default once the plan is applied (unchanged, or DefaultChange.after), so
    # renderers can show a user without a direct policy by its EFFECTIVE policy.
    default_policy: str | None = None
    # The policies.yaml the plan was made from, as given (not hashed: the config digest is);
    # `apply PLAN.json` without -c reads this one.
    config_file: str | None = None
    # The UTC date the plan was made for (expiring rules); hashed into the fingerprint.
    as_of: str | None = None
    # The organization default before the plan: with `default_policy`, what tells a user
    # change's effective policy (direct, default or none) before and after.
    default_before: str | None = None
    # Mailbox SMTP AUTH settings were read: user changes carry their Basic SMTP outcome.
    mailboxes_read: bool = False
    # Users who rely on the default after the plan (the default_cleared guard's count): from
    # the planner only, not part of the plan file (apply recomputes guards from a fresh read).
    relying_after: int = field(default=0, compare=False)
    # Who really used Basic auth (the sign-in log), when the file asks for it.
    evidence: EvidenceSummary | None = field(default=None, compare=False)
    # The tenant's initial domain, for people (`tenant` may be the GUID it was configured as).
    tenant_domain: str | None = field(default=None, compare=False)

    @property
    def blocked(self) -> bool:
        return bool(self.guards)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)
