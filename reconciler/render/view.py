"""The one view-model every human renderer draws from: rows of kind, object, before, after."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import (
    PROTOCOL_NAMES,
    ChangeEvidence,
    DefaultChange,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    ReplaceResume,
    SmtpOrgChange,
    UserChange,
)
from reconciler.render.escape import is_plain_address, mask_emails, mask_upn
from reconciler.render.jsonplan import summary_of

# protocol -> (users who used it, last use): a row's evidence; users None = not known.
Evidence = Mapping[str, tuple[int | None, str | None]]


def _evidence_of(evidence: ChangeEvidence | None) -> Evidence | None:
    if evidence is None:
        return None
    return {p: (e.users, e.last) for p, e in evidence.protocols.items()}


def _merge_evidence(into: dict[str, tuple[int | None, str | None]], more: Evidence) -> None:
    """Add one change's evidence to a group's (counts add up, the latest use wins)."""
    for protocol, (users, last) in more.items():
        old_users, old_last = into.get(protocol, (0, None))
        total = None if users is None or old_users is None else old_users + users
        into[protocol] = (total, max(filter(None, (old_last, last)), default=None))


@dataclass(frozen=True, slots=True)
class FieldRow:
    protocol: str
    before: bool
    after: bool

    @property
    def weakens(self) -> bool:
        return self.after and not self.before


@dataclass(frozen=True, slots=True)
class PolicyRow:
    symbol: str  # "+" create, "~" update, "-/+" replace, "-" delete
    verb: str  # create | update | replace | delete
    name: str
    fields: tuple[FieldRow, ...] = ()
    allow: tuple[str, ...] | None = None  # the whole allow list, for create/replace
    affected_users: int | None = None
    holders: int = 0
    weakens: bool = False
    holding: str = ""  # resume: the holding policy an earlier replace left
    holding_default: bool = False
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class DefaultRow:
    before: str | None
    after: str | None
    affected_users: int
    weakens: bool
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class UserGroup:
    """Users that make the same move for the same rule."""

    symbol: str  # "+" from none, "-" to none, "~" from one policy to another
    before: str | None
    after: str | None
    rule: str
    users: tuple[str, ...]  # display names (masked when asked), in plan order
    weakens: bool
    # The org default before/after the plan: a user without a direct policy has it.
    default_before: str | None = None
    default_after: str | None = None
    # Their effective Basic SMTP before/after (None: mailbox settings were not read).
    basic_before: str | None = None
    basic_after: str | None = None
    evidence: Evidence | None = None

    @property
    def effective_unchanged(self) -> bool:
        """Direct policy moves, effective one stays (e.g. from relying on the default to
        holding that same policy directly)."""
        before = self.before if self.before is not None else self.default_before
        after = self.after if self.after is not None else self.default_after
        return (before or "").casefold() == (after or "").casefold() and (before is None) == (
            after is None
        )


@dataclass(frozen=True, slots=True)
class SmtpOrgRow:
    before: str | None  # None: Get-TransportConfig does not show it
    after: str
    affected_users: int | None  # mailboxes following the org after the plan (None: not read)
    weakens: bool
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class MailboxGroup:
    """Mailboxes whose SMTP AUTH setting makes the same move for the same rule."""

    before: str
    after: str
    rule: str
    users: tuple[str, ...]
    weakens: bool
    basic_before: str | None
    basic_after: str | None
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class PlanView:
    tenant: str
    fingerprint: str
    summary: dict[str, int]
    policies: tuple[PolicyRow, ...]  # creates, updates, replaces (execution order)
    default: DefaultRow | None
    user_groups: tuple[UserGroup, ...]
    deletes: tuple[PolicyRow, ...]
    warnings: tuple[str, ...]
    guards: tuple[str, ...]
    weakening: int  # how many changes weaken security
    total: int
    smtp_org: SmtpOrgRow | None = None
    mailbox_groups: tuple[MailboxGroup, ...] = ()
    mailboxes_read: bool = False
    # Sign-in evidence: the window in days (None: not asked for), whether it was read, and
    # the distinct users the plan blocks from a protocol they used.
    evidence_days: int | None = None
    evidence_read: bool = False
    active_blocked: int = 0
    tenant_domain: str | None = None  # the initial domain, when `tenant` is not it

    @property
    def user_changes(self) -> int:
        return self.summary["user_assign"] + self.summary["user_clear"]


def _allow_list(allow: frozenset[str]) -> tuple[str, ...]:
    return tuple(name for name in PROTOCOL_NAMES if name in allow)


def _fold_key(name: str | None) -> tuple[int, str, str]:
    return (0, "", "") if name is None else (1, name.casefold(), name)


def _free_text_masker(plan: Plan) -> Callable[[str], str]:
    """Masks addresses in warnings and guard messages. A UPN with spaces or odd characters
    (tenant-side, so possible) is not found by the address pattern; those known from the
    plan's user changes are replaced exactly first."""
    odd = sorted(
        {
            c.user
            for c in plan.changes
            if isinstance(c, UserChange | MailboxSmtpChange) and not is_plain_address(c.user)
        },
        key=lambda u: (-len(u), u),
    )

    def mask(text: str) -> str:
        for upn in odd:
            if upn and upn in text:
                text = text.replace(upn, mask_upn(upn))
        return mask_emails(text)

    return mask


def build_view(plan: Plan, *, mask_users: bool = False) -> PlanView:
    """The plan, grouped and ordered for people. Masks UPNs everywhere when asked."""
    show: Callable[[str], str] = mask_upn if mask_users else str
    text: Callable[[str], str] = str
    if mask_users:
        text = _free_text_masker(plan)
    policies: list[PolicyRow] = []
    deletes: list[PolicyRow] = []
    default: DefaultRow | None = None
    groups: dict[tuple[str, str | None, str | None, str, str | None, str | None], list[str]] = {}
    group_weakens: dict[tuple[str, str | None, str | None, str, str | None, str | None], bool] = {}
    smtp_org: SmtpOrgRow | None = None
    boxes: dict[tuple[str, str, str, str | None, str | None], list[str]] = {}
    box_weakens: dict[tuple[str, str, str, str | None, str | None], bool] = {}
    group_evidence: dict[Any, dict[str, tuple[int | None, str | None]]] = {}
    box_evidence: dict[Any, dict[str, tuple[int | None, str | None]]] = {}
    for change in plan.changes:
        if isinstance(change, PolicyCreate):
            policies.append(
                PolicyRow("+", "create", change.policy, allow=_allow_list(change.after))
            )
        elif isinstance(change, PolicyUpdate):
            policies.append(
                PolicyRow(
                    "~",
                    "update",
                    change.policy,
                    fields=tuple(FieldRow(f.protocol, f.before, f.after) for f in change.fields),
                    affected_users=change.affected_users,
                    weakens=change.weakens,
                    evidence=_evidence_of(change.evidence),
                )
            )
        elif isinstance(change, PolicyReplace):
            policies.append(
                PolicyRow(
                    "-/+",
                    "replace",
                    change.policy,
                    fields=tuple(FieldRow(f.protocol, f.before, f.after) for f in change.fields),
                    allow=_allow_list(change.after),
                    holders=len(change.holders),
                    weakens=change.weakens,
                    evidence=_evidence_of(change.evidence),
                )
            )
        elif isinstance(change, PolicyDelete):
            deletes.append(PolicyRow("-", "delete", change.policy, weakens=change.weakens))
        elif isinstance(change, ReplaceResume):
            policies.append(
                PolicyRow(
                    "~",
                    "resume",
                    change.policy,
                    holders=len(change.holders),
                    holding=change.holding,
                    holding_default=change.default,
                )
            )
        elif isinstance(change, DefaultChange):
            default = DefaultRow(
                change.before,
                change.after,
                change.affected_users,
                change.weakens,
                _evidence_of(change.evidence),
            )
        elif isinstance(change, SmtpOrgChange):
            smtp_org = SmtpOrgRow(
                change.before,
                change.after,
                change.affected_users,
                change.weakens,
                _evidence_of(change.evidence),
            )
        elif isinstance(change, MailboxSmtpChange):
            box_key = (
                change.before,
                change.after,
                change.rule,
                change.basic_smtp_before,
                change.basic_smtp_after,
            )
            boxes.setdefault(box_key, []).append(show(change.user))
            box_weakens[box_key] = box_weakens.get(box_key, False) or change.weakens
            if change.evidence is not None:
                _merge_evidence(
                    box_evidence.setdefault(box_key, {}), _evidence_of(change.evidence) or {}
                )
        elif isinstance(change, UserChange):
            symbol = "+" if change.before is None else "-" if change.after is None else "~"
            key = (
                symbol,
                change.before,
                change.after,
                change.rule,
                change.basic_smtp_before,
                change.basic_smtp_after,
            )
            groups.setdefault(key, []).append(show(change.user))
            group_weakens[key] = group_weakens.get(key, False) or change.weakens
            if change.evidence is not None:
                _merge_evidence(
                    group_evidence.setdefault(key, {}), _evidence_of(change.evidence) or {}
                )
    default_after = plan.default_policy
    default_before = default.before if default is not None else default_after
    user_groups = [
        UserGroup(
            *key[:4],
            users=tuple(users),
            weakens=group_weakens[key],
            default_before=default_before,
            default_after=default_after,
            basic_before=key[4],
            basic_after=key[5],
            evidence=group_evidence.get(key),
        )
        for key, users in groups.items()
    ]
    mailbox_groups = sorted(
        (
            MailboxGroup(
                *key[:3], tuple(users), box_weakens[key], key[3], key[4], box_evidence.get(key)
            )
            for key, users in boxes.items()
        ),
        key=lambda g: (-len(g.users), g.after, g.before, g.rule, g.basic_before or ""),
    )
    # Biggest moves first; ties in a fixed order so output is stable.
    user_groups.sort(key=lambda g: (-len(g.users), _fold_key(g.after), _fold_key(g.before), g.rule))
    return PlanView(
        tenant=plan.tenant,
        tenant_domain=plan.tenant_domain
        if plan.tenant_domain and plan.tenant_domain.casefold() != plan.tenant.casefold()
        else None,
        fingerprint=plan.fingerprint,
        summary=summary_of(plan.changes),
        policies=tuple(policies),
        default=default,
        user_groups=tuple(user_groups),
        deletes=tuple(deletes),
        warnings=tuple(text(w) for w in plan.warnings),
        guards=tuple(text(g.message) for g in plan.guards),
        weakening=sum(1 for c in plan.changes if c.weakens),
        total=len(plan.changes),
        smtp_org=smtp_org,
        mailbox_groups=tuple(mailbox_groups),
        mailboxes_read=plan.mailboxes_read,
        evidence_days=plan.evidence.days if plan.evidence is not None else None,
        evidence_read=plan.evidence is not None and plan.evidence.status == "read",
        active_blocked=plan.evidence.active_users_blocked if plan.evidence is not None else 0,
    )


def summary_line(view: PlanView) -> str:
    """One line of counts, Terraform style."""
    s = view.summary
    if not view.total:
        return "No changes. The tenant matches the desired state."
    parts = [
        f"{s['policy_create']} to create",
        f"{s['policy_update'] + s.get('policy_replace', 0)} to update",
        f"{s['policy_delete']} to delete",
    ]
    if s.get("replace_resume"):
        parts.insert(0, f"{s['replace_resume']} unfinished replace to finish")
    parts.append("default changes" if s["default_change"] else "default unchanged")
    if s["smtp_org_change"]:
        parts.append("org SMTP AUTH changes")
    if s["mailbox_smtp_change"]:
        boxes = s["mailbox_smtp_change"]
        parts.append(f"{boxes:,} mailbox SMTP AUTH change{'s' if boxes != 1 else ''}")
    users = view.user_changes
    parts.append(
        f"{users:,} user change{'s' if users != 1 else ''}"
        f" ({s['user_assign']:,} assign, {s['user_clear']:,} clear)"
    )
    if view.evidence_days is not None:
        parts.append(
            f"{view.active_blocked:,} active user{'s' if view.active_blocked != 1 else ''} blocked"
            if view.evidence_read
            else "active users blocked unknown (no sign-in evidence)"
        )
    line = "Plan: " + ", ".join(parts) + "."
    if view.weakening:
        line += f" {view.weakening:,} weaken{'s' if view.weakening == 1 else ''} security."
    return line


PROPAGATION_NOTE = (
    "Exchange Online applies policy changes within 24 hours; users whose sessions are revoked "
    "(assignments.revoke_sessions) get them within about 30 minutes."
)
