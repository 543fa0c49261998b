"""The exposure report's view-model: computed once from a snapshot, rendered by small functions.

What an auditor asks: which policy governs each user (direct, else the org default, else none),
and who can still use Basic authentication, for what. In Exchange Online in 2026 only SMTP AUTH
(client submission) still accepts Basic auth, and only when three layers all allow it:

1. the user's effective authentication policy allows Basic SMTP (`AllowBasicAuthSmtp`), or the
   user has no policy at all (nothing blocks);
2. SMTP AUTH is enabled for the mailbox: `Set-CASMailbox -SmtpClientAuthenticationDisabled`
   True disables it, False enables it whatever the org says, None follows the org;
3. the org setting `Get-TransportConfig SmtpClientAuthenticationDisabled` when the mailbox
   follows it.

The other eleven switches still exist but Microsoft retired Basic auth for those protocols in
2022/2023; a policy that allows them is shown as "allowed (no effect since 2022/2023)", not as
exposure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

from reconciler.model import (
    OTHER,
    PROTOCOL_BY_NAME,
    PROTOCOL_NAMES,
    BasicSmtp,
    ProtocolUse,
    TenantSnapshot,
    TenantUser,
    basic_smtp,
    effective_policy,
    smtp_auth_effective,
)
from reconciler.render.escape import mask_upn

Via: TypeAlias = Literal["direct", "default", "none"]

# Why SMTP AUTH is on or off for a mailbox (the second and third layers above).
SmtpAuthSource: TypeAlias = Literal["mailbox", "org", "unknown"]

REPORT_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class UserRow:
    """One user's effective policy and Basic-auth exposure."""

    upn: str
    id: str
    recipient_type: str
    direct_policy: str | None
    effective_policy: str | None
    via: Via
    # Protocols the effective policy keeps Basic auth for (all twelve when there is no policy).
    allowed: tuple[str, ...]
    policy_found: bool  # False: the direct policy names an object that no longer exists
    smtp_auth_enabled: bool  # SMTP AUTH itself, from the mailbox override or the org setting
    smtp_auth_source: SmtpAuthSource
    smtp_basic_auth_possible: bool  # allowed, or unknown (the report errs towards exposure)
    basic_smtp: BasicSmtp = "unknown"  # model.basic_smtp: the one definition plans use too
    # Basic sign-ins in the evidence window, per protocol (OTHER: "Other clients").
    basic_use: Mapping[str, ProtocolUse] = field(default_factory=dict)

    def may_use(self, protocol: str) -> bool:
        """Does Basic auth on `protocol` get past every layer for this user now?"""
        if protocol == "smtp":
            return self.basic_smtp != "blocked"
        return protocol in self.allowed

    @property
    def used(self) -> tuple[str, ...]:
        """Protocols with a successful Basic sign-in in the window ("Other clients" left out)."""
        return tuple(p for p in PROTOCOL_NAMES if (u := self.basic_use.get(p)) and u.count)

    @property
    def policy_allows_smtp(self) -> bool:
        return "smtp" in self.allowed

    @property
    def smtp_reason(self) -> str:
        """Why Basic SMTP AUTH is possible or not, in a few words."""
        if not self.policy_allows_smtp:
            return "policy blocks Basic SMTP"
        if self.via == "none":
            layer = "no policy"
        elif not self.policy_found:
            layer = f"policy {self.effective_policy!r} not found"
        else:
            layer = "policy allows Basic SMTP"
        if not self.smtp_auth_enabled:
            where = "mailbox" if self.smtp_auth_source == "mailbox" else "org"
            return f"{layer}, but SMTP AUTH is disabled ({where})"
        if self.smtp_auth_source == "mailbox":
            return f"{layer}; SMTP AUTH enabled on the mailbox (overrides org)"
        if self.smtp_auth_source == "unknown":
            return f"{layer}; SMTP AUTH setting unknown (not read or not shown; assumed enabled)"
        return f"{layer}; SMTP AUTH enabled org-wide"


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """One policy (or the "no policy" bucket) with the users it governs."""

    name: str | None  # None: users with no policy at all
    exists: bool  # False for a dangling name that users still hold, and for the None bucket
    is_default: bool
    direct_users: int
    default_users: int  # users governed through the org default
    allowed: tuple[str, ...]  # protocols that keep Basic auth
    smtp_exposed_users: int  # of the governed users, how many can still use Basic SMTP AUTH

    @property
    def total_users(self) -> int:
        return self.direct_users + self.default_users

    @property
    def allowed_effective(self) -> tuple[str, ...]:
        return tuple(p for p in self.allowed if PROTOCOL_BY_NAME[p].still_effective)

    @property
    def allowed_inert(self) -> tuple[str, ...]:
        return tuple(p for p in self.allowed if not PROTOCOL_BY_NAME[p].still_effective)


@dataclass(frozen=True, slots=True)
class UnusedRow:
    """A policy that lets Basic auth through on a protocol nobody it governs used lately."""

    policy: str | None  # None: users with no policy at all
    protocol: str
    users: int  # users it lets through on that protocol


@dataclass(frozen=True, slots=True)
class SignInSection:
    """What the Entra sign-in log says (evidence): read, or why not."""

    status: Literal["read", "missing"]
    days: int
    since: str
    reason: str = ""
    events: int = 0
    unused: tuple[UnusedRow, ...] = ()

    @property
    def read(self) -> bool:
        return self.status == "read"


@dataclass(frozen=True, slots=True)
class ExposureReport:
    """Everything the renderers show; computed once by `build_report`."""

    tenant: str
    default_policy: str | None
    default_policy_found: bool
    smtp_auth_disabled_org: bool | None  # None: not read, or not shown by Get-TransportConfig
    smtp_settings_read: bool  # Get-CASMailbox was read
    users: tuple[UserRow, ...]  # sorted by UPN
    policies: tuple[PolicyRow, ...]  # sorted by name; the "no policy" bucket last when non-empty
    sign_ins: SignInSection | None = None  # None: the sign-in log was not asked for
    made_at: str | None = None  # when the tenant was read (UTC, ISO); set by the command

    @property
    def active(self) -> tuple[UserRow, ...]:
        """Users with a successful Basic sign-in in the window ("Other clients" included)."""
        return tuple(u for u in self.users if any(use.count for use in u.basic_use.values()))

    @property
    def used_not_allowed(self) -> tuple[tuple[UserRow, str], ...]:
        """(user, protocol): used Basic auth in the window, and the tenant now blocks it."""
        return tuple((u, p) for u in self.users for p in u.used if not u.may_use(p))

    @property
    def total_users(self) -> int:
        return len(self.users)

    @property
    def smtp_exposed(self) -> tuple[UserRow, ...]:
        return tuple(u for u in self.users if u.smtp_basic_auth_possible)

    @property
    def no_policy(self) -> tuple[UserRow, ...]:
        return tuple(u for u in self.users if u.via == "none")

    @property
    def dangling(self) -> tuple[UserRow, ...]:
        return tuple(u for u in self.users if not u.policy_found)

    @property
    def protected(self) -> int:
        """Users for whom Basic auth is blocked everywhere it still works (SMTP AUTH)."""
        return self.total_users - len(self.smtp_exposed)

    def counts(self) -> dict[str, int]:
        """The headline numbers, by name (also the JSON summary)."""
        via = Counter(u.via for u in self.users)
        return {
            "users": self.total_users,
            "direct_policy": via["direct"],
            "via_default": via["default"],
            "no_policy": via["none"],
            "protected": self.protected,
            "smtp_basic_auth_possible": len(self.smtp_exposed),
            # Protected only by the SMTP AUTH setting (mailbox or org), not by their policy:
            # one Set-TransportConfig or Set-CASMailbox away from exposure.
            "smtp_policy_allows_but_smtp_auth_off": sum(
                1 for u in self.users if u.policy_allows_smtp and not u.smtp_auth_enabled
            ),
            "policy_not_found": len(self.dangling),
            # Counted as possible above because SMTP AUTH follows an org switch not shown.
            "smtp_basic_auth_unknown": sum(1 for u in self.users if u.basic_smtp == "unknown"),
            **(
                {
                    "basic_auth_users_in_window": len(self.active),
                    "used_but_no_longer_allowed": len(
                        {u.id or u.upn for u, _ in self.used_not_allowed}
                    ),
                    "allowed_but_unused": len(self.sign_ins.unused),
                }
                if self.sign_ins is not None and self.sign_ins.read
                else {}
            ),
        }


def _smtp_auth_for(user: TenantUser, snapshot: TenantSnapshot) -> tuple[bool, SmtpAuthSource]:
    """Is SMTP AUTH enabled for the mailbox (any auth method), and which setting says so."""
    if user.smtp_auth in ("enabled", "disabled"):
        return (user.smtp_auth == "enabled", "mailbox")
    effective = smtp_auth_effective("organization", snapshot.smtp_org)
    if effective is not None:
        return (effective == "enabled", "org")
    # Not read or not shown: assume enabled, so the report errs towards showing exposure.
    return (True, "unknown")


def build_report(snapshot: TenantSnapshot) -> ExposureReport:
    """The exposure report of a snapshot (read with `SnapshotNeeds(smtp_settings=True)`).

    A direct policy that names no existing object (a dangling link) is treated like no policy:
    nothing is known to block Basic auth for that user, and the report says so.
    """
    default = snapshot.policy(snapshot.default_policy)
    log = snapshot.sign_ins
    uses = log.by_user if log is not None and log.read else {}
    rows: list[UserRow] = []
    for user in sorted(snapshot.users, key=lambda u: (u.upn.casefold(), u.upn, u.id)):
        name = effective_policy(user, snapshot.default_policy)
        via: Via = "direct" if user.policy is not None else "default" if name else "none"
        policy = snapshot.policy(name)
        found = via == "none" or policy is not None
        if policy is not None:
            name = policy.name  # the tenant's spelling
            allowed = tuple(p for p in PROTOCOL_NAMES if p in policy.allow)
        else:
            allowed = PROTOCOL_NAMES  # nothing blocks
        enabled, source = _smtp_auth_for(user, snapshot)
        # No mailbox (only knowable once Get-CASMailbox was read): nothing to submit from.
        has_mailbox = not snapshot.mailboxes_read or user.smtp_auth is not None
        basic = basic_smtp(
            "smtp" in allowed,
            user.smtp_auth or "organization",
            snapshot.smtp_org,
            mailbox=has_mailbox,
        )
        rows.append(
            UserRow(
                upn=user.upn,
                id=user.id,
                recipient_type=user.recipient_type,
                direct_policy=user.policy,
                effective_policy=name,
                via=via,
                allowed=allowed,
                policy_found=found,
                smtp_auth_enabled=enabled,
                smtp_auth_source=source,
                smtp_basic_auth_possible=basic != "blocked",
                basic_smtp=basic,
                basic_use=uses.get(user.id, {}),
            )
        )

    return ExposureReport(
        tenant=snapshot.tenant,
        default_policy=default.name if default is not None else snapshot.default_policy,
        default_policy_found=snapshot.default_policy is None or default is not None,
        smtp_auth_disabled_org=(
            None if snapshot.smtp_org is None else snapshot.smtp_org == "disabled"
        ),
        smtp_settings_read=snapshot.mailboxes_read,
        users=tuple(rows),
        policies=_policy_rows(snapshot, rows, default.name if default else None),
        sign_ins=None
        if log is None
        else SignInSection(
            log.status,
            log.days,
            log.since,
            log.reason,
            log.events,
            _unused(rows) if log.read else (),
        ),
    )


def _unused(users: list[UserRow]) -> tuple[UnusedRow, ...]:
    """Per policy and protocol: Basic auth gets through for its users, and none used it."""
    open_: Counter[tuple[str | None, str]] = Counter()
    used: set[tuple[str | None, str]] = set()
    for u in users:
        key = u.effective_policy if u.via != "none" and u.policy_found else None
        for protocol in PROTOCOL_NAMES:
            if u.may_use(protocol):
                open_[(key, protocol)] += 1
                if protocol in u.used:
                    used.add((key, protocol))
    rows = [
        UnusedRow(policy, protocol, count)
        for (policy, protocol), count in open_.items()
        if (policy, protocol) not in used
    ]
    rows.sort(
        key=lambda r: (
            r.policy is None,
            (r.policy or "").casefold(),
            PROTOCOL_NAMES.index(r.protocol),
        )
    )
    return tuple(rows)


def last_uses(user: UserRow, *, dates_only: bool = False) -> str:
    """`imap 2026-12-01T20:55:33Z, smtp ...`: a user's last successful Basic use per protocol."""
    parts = []
    for protocol in (*PROTOCOL_NAMES, OTHER):
        use = user.basic_use.get(protocol)
        if use is not None and use.count and use.last:
            when = use.last[:10] if dates_only else use.last
            parts.append(f"{protocol if protocol != OTHER else 'other clients'} {when}")
    return ", ".join(parts)


def _policy_rows(
    snapshot: TenantSnapshot, users: list[UserRow], default_name: str | None
) -> tuple[PolicyRow, ...]:
    direct: Counter[str | None] = Counter()
    via_default: Counter[str | None] = Counter()
    exposed: Counter[str | None] = Counter()
    for u in users:
        key = u.effective_policy.casefold() if u.effective_policy is not None else None
        (direct if u.via == "direct" else via_default)[key] += 1
        if u.smtp_basic_auth_possible:
            exposed[key] += 1

    rows: list[PolicyRow] = []
    seen: set[str] = set()
    for p in sorted(snapshot.policies, key=lambda p: (p.name.casefold(), p.name)):
        key = p.name.casefold()
        seen.add(key)
        rows.append(
            PolicyRow(
                name=p.name,
                exists=True,
                is_default=p.name == default_name,
                direct_users=direct[key],
                default_users=via_default[key],
                allowed=tuple(n for n in PROTOCOL_NAMES if n in p.allow),
                smtp_exposed_users=exposed[key],
            )
        )
    # Names that users (or the default) still point at but that no longer exist.
    missing = {
        u.effective_policy.casefold(): u.effective_policy
        for u in users
        if u.effective_policy is not None and not u.policy_found
    }
    for key, name in sorted(missing.items()):
        if key in seen:
            continue
        rows.append(
            PolicyRow(
                name=name,
                exists=False,
                is_default=False,
                direct_users=direct[key],
                default_users=via_default[key],
                allowed=PROTOCOL_NAMES,
                smtp_exposed_users=exposed[key],
            )
        )
    if direct[None] or via_default[None]:
        rows.append(
            PolicyRow(
                name=None,
                exists=False,
                is_default=False,
                direct_users=0,
                default_users=direct[None] + via_default[None],
                allowed=PROTOCOL_NAMES,
                smtp_exposed_users=exposed[None],
            )
        )
    return tuple(rows)


def masked(report: ExposureReport) -> ExposureReport:
    """The report with every UPN masked (a***@contoso.com), for places others can read.

    Counts, policies and order are unchanged; user ids are dropped as well, since they are
    stable personal identifiers too.
    """
    return replace(
        report,
        users=tuple(replace(u, upn=mask_upn(u.upn), id="") for u in report.users),
    )
