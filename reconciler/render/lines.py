"""Plan lines shared by the text and Markdown renderers: `+ ~ -` first, then the object."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.render.escape import quoted, visible
from reconciler.render.view import Evidence, MailboxGroup, PlanView, PolicyRow, UserGroup

WEAKENS = "[weakens security]"
ARROW = "→"


@dataclass(frozen=True, slots=True)
class Line:
    symbol: str  # "+", "~", "-", "-/+"
    text: str
    detail: bool = False  # a continuation line under the object above it
    weakens: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    lines: tuple[Line, ...]
    count: int  # objects changed: policies, 1 default, or users (not groups of users)


def _state(allowed: bool) -> str:
    return "allowed" if allowed else "blocked"


def _users(count: int) -> str:
    return f"{count:,} user" if count == 1 else f"{count:,} users"


def evidence_line(symbol: str, evidence: Evidence | None, days: int | None) -> list[Line]:
    """`Basic auth use in the last 30 days: imap by 3 users (last 2026-12-01), smtp by nobody`:
    counts and dates only (a PR comment never carries sign-in times or addresses)."""
    if evidence is None or not evidence:
        return []
    parts = []
    unknown = []
    for protocol, (users, last) in evidence.items():
        if users is None:
            unknown.append(protocol)
        elif users == 0:
            parts.append(f"{protocol} by nobody")
        else:
            parts.append(f"{protocol} by {_users(users)} (last {(last or '')[:10]})")
    if unknown:
        text = (
            f"takes Basic {', '.join(unknown)} away; who uses it is not known (no sign-in evidence)"
        )
    else:
        text = f"Basic auth use in the last {days or '?'} days: {', '.join(parts)}"
    active = any(users for users, _ in evidence.values())
    return [Line(symbol, text, detail=True, weakens=active)]


def _policy_lines(row: PolicyRow, days: int | None = None) -> list[Line]:
    head = f"{row.verb} policy {quoted(row.name)}"
    if row.verb == "update" and row.affected_users is not None:
        head += f"  (effective for {_users(row.affected_users)})"
    if row.verb == "replace":
        head += f"  (removed and created again; {_users(row.holders)} re-pointed)"
    if row.verb == "resume":
        default = " and the default" if row.holding_default else ""
        head = (
            f"finish the replace of policy {quoted(row.name)}: {_users(row.holders)}{default} "
            f"back from {quoted(row.holding)}, which is then removed (an earlier apply stopped)"
        )
    if row.weakens:
        head += f"  {WEAKENS}"
    lines = [Line(row.symbol, head, weakens=row.weakens)]
    if row.allow is not None and row.verb == "create":
        allow = ", ".join(row.allow) if row.allow else "nothing (Basic auth blocked everywhere)"
        lines.append(Line(row.symbol, f"allow: {allow}", detail=True))
    for field in row.fields:
        text = f"{field.protocol}: {_state(field.before)} {ARROW} {_state(field.after)}"
        if field.weakens:
            text += f"  {WEAKENS}"
        lines.append(Line(row.symbol, text, detail=True, weakens=field.weakens))
    return lines + evidence_line(row.symbol, row.evidence, days)


def _direct(name: str | None, default: str | None) -> str:
    """A direct policy; none shows what governs instead (Get-User's blank is not 'unprotected')."""
    if name is None and default is not None:
        return f"(none, default {quoted(default)})"
    return quoted(name)


def _user_group_lines(
    group: UserGroup, show_users: int | None, days: int | None = None
) -> list[Line]:
    before = _direct(group.before, group.default_before)
    after = _direct(group.after, group.default_after)
    unchanged = "; effective policy unchanged" if group.effective_unchanged else ""
    head = (
        f"{_users(len(group.users))}: {before} {ARROW} {after}"
        f"  (rule {quoted(group.rule)}{unchanged}{_basic(group.basic_before, group.basic_after)})"
    )
    if group.weakens:
        head += f"  {WEAKENS}"
    lines = [Line(group.symbol, head, weakens=group.weakens)]
    lines += evidence_line(group.symbol, group.evidence, days)
    return lines + _listed(group.symbol, group.users, show_users)


def _basic(before: str | None, after: str | None) -> str:
    """Effective Basic SMTP (policy AND SMTP AUTH), when mailbox settings were read."""
    if before is None or after is None:
        return ""
    if before == after:
        return f"; Basic SMTP {after}"
    return f"; Basic SMTP {before} {ARROW} {after}"


def _mailbox_group_lines(
    group: MailboxGroup, show_users: int | None, days: int | None = None
) -> list[Line]:
    head = (
        f"{_users(len(group.users))}: SMTP AUTH {group.before} {ARROW} {group.after}"
        f"  (rule {quoted(group.rule)}{_basic(group.basic_before, group.basic_after)})"
    )
    if group.weakens:
        head += f"  {WEAKENS}"
    return [
        Line("~", head, weakens=group.weakens),
        *evidence_line("~", group.evidence, days),
        *_listed("~", group.users, show_users),
    ]


def _listed(symbol: str, users: tuple[str, ...], show_users: int | None) -> list[Line]:
    lines: list[Line] = []
    shown = users if show_users is None else users[:show_users]
    lines += [Line(symbol, visible(user), detail=True) for user in shown]
    hidden = len(users) - len(shown)
    if hidden:
        lines.append(
            Line(symbol, f"... and {hidden:,} more (--show-users all lists every one)", True)
        )
    return lines


def plan_sections(view: PlanView, show_users: int | None) -> list[Section]:
    """The plan's changes as titled sections, in execution order."""
    sections: list[Section] = []
    days = view.evidence_days
    if view.policies:
        lines = [line for row in view.policies for line in _policy_lines(row, days)]
        sections.append(Section("Policies", tuple(lines), len(view.policies)))
    if view.default is not None:
        d = view.default
        text = (
            f"default policy: {quoted(d.before)} {ARROW} {quoted(d.after)}"
            f"  (effective policy changes for {_users(d.affected_users)})"
        )
        if d.weakens:
            text += f"  {WEAKENS}"
        symbol = "+" if d.before is None else "-" if d.after is None else "~"
        default_lines = (
            Line(symbol, text, weakens=d.weakens),
            *evidence_line(symbol, d.evidence, days),
        )
        sections.append(Section("Organization default", default_lines, 1))
    if view.smtp_org is not None:
        o = view.smtp_org
        followers = (
            f"  ({_users(o.affected_users)} follow it)"
            if o.affected_users is not None
            else "  (mailbox settings not read: who follows it is not known)"
        )
        text = (
            f"SMTP AUTH org-wide (Set-TransportConfig): {o.before or 'unknown (not shown)'} "
            f"{ARROW} {o.after}{followers}"
        )
        if o.weakens:
            text += f"  {WEAKENS}"
        org_lines = (Line("~", text, weakens=o.weakens), *evidence_line("~", o.evidence, days))
        sections.append(Section("Organization SMTP AUTH", org_lines, 1))
    if view.mailbox_groups:
        lines = [
            line for g in view.mailbox_groups for line in _mailbox_group_lines(g, show_users, days)
        ]
        count = sum(len(g.users) for g in view.mailbox_groups)
        sections.append(Section("Mailbox SMTP AUTH (Set-CASMailbox)", tuple(lines), count))
    if view.user_groups:
        lines = [line for g in view.user_groups for line in _user_group_lines(g, show_users, days)]
        if not view.mailboxes_read:
            lines.append(
                Line(
                    " ",
                    "(mailbox SMTP AUTH settings were not read: this file sets none, so these "
                    "lines show the policy, not whether Basic SMTP works)",
                    detail=True,
                )
            )
        sections.append(Section("Users", tuple(lines), view.user_changes))
    if view.deletes:
        lines = [line for row in view.deletes for line in _policy_lines(row)]
        sections.append(
            Section(
                "Policies to delete (after the users have moved)", tuple(lines), len(view.deletes)
            )
        )
    return sections
