"""The exposure report for a terminal: headline numbers, a policy table, then user lists."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.report.model import ExposureReport, PolicyRow, UserRow, last_uses

INERT_NOTE = "no effect since 2022/2023"


def clean(value: str) -> str:
    """A tenant value made safe for a terminal: control characters (escape sequences, newlines)
    are shown escaped instead of being interpreted."""
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)


def policy_label(name: str | None) -> str:
    return "(no policy)" if name is None else clean(name)


def allowed_text(row: PolicyRow) -> str:
    """ "smtp; allowed with no effect since 2022/2023: imap" or "nothing (Basic blocked)"."""
    if row.name is None or not row.exists:
        return "everything: no policy blocks Basic auth"
    parts: list[str] = []
    if row.allowed_effective:
        parts.append(", ".join(row.allowed_effective))
    if row.allowed_inert:
        parts.append(f"allowed ({INERT_NOTE}): {', '.join(row.allowed_inert)}")
    return "; ".join(parts) if parts else "nothing (Basic auth blocked)"


def org_smtp_text(report: ExposureReport) -> str:
    if report.smtp_auth_disabled_org is None:
        return "unknown: not shown by Get-TransportConfig (assumed enabled)"
    return "disabled" if report.smtp_auth_disabled_org else "enabled"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  " + "  ".join(out).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _percent(part: int, total: int) -> str:
    return f"{100.0 * part / total:.1f}%" if total else "-"


def _user_list(
    title: str, users: Sequence[UserRow], show_users: int | None, describe: list[str]
) -> list[str]:
    lines = ["", f"{title} ({len(users):,})"]
    lines += [f"  {d}" for d in describe]
    if not users:
        lines.append("  none")
        return lines
    shown = users if show_users is None else users[:show_users]
    rows = [
        [
            clean(u.upn),
            f"{policy_label(u.effective_policy)} ({u.via})" if u.via != "none" else "(no policy)",
            u.smtp_reason,
        ]
        for u in shown
    ]
    lines += _table(["USER", "POLICY (VIA)", "WHY"], rows, set())
    hidden = len(users) - len(shown)
    if hidden:
        lines.append(f"  ... and {hidden:,} more (--show-users all to list them)")
    return lines


def render_text(report: ExposureReport, *, show_users: int | None = 20) -> str:
    """The report as plain text, readable at a glance."""
    c = report.counts()
    total = c["users"]
    default = (
        "none"
        if report.default_policy is None
        else policy_label(report.default_policy)
        + ("" if report.default_policy_found else " (NOT FOUND in the tenant)")
    )
    width = len(f"{total:,}")
    lines = [
        f"Basic-auth exposure report: {clean(report.tenant)}"
        + (f" (read {report.made_at})" if report.made_at else ""),
        f"Default policy: {default} | SMTP AUTH org-wide (Get-TransportConfig): "
        f"{org_smtp_text(report)}",
        "",
        f"  {total:>{width},}  users",
        f"  {c['protected']:>{width},}  protected: Basic auth blocked wherever it still works "
        f"({_percent(c['protected'], total)})",
        f"  {c['smtp_policy_allows_but_smtp_auth_off']:>{width},}    of them only because SMTP "
        "AUTH is off: their policy allows Basic SMTP",
        f"  {c['smtp_basic_auth_possible']:>{width},}  can still use Basic SMTP AUTH "
        f"({_percent(c['smtp_basic_auth_possible'], total)})",
        *(
            [
                f"  {c['smtp_basic_auth_unknown']:>{width},}    of them unknown: they follow an "
                "org SMTP AUTH switch Get-TransportConfig does not show (counted as possible)"
            ]
            if c["smtp_basic_auth_unknown"]
            else []
        ),
        f"  {c['no_policy']:>{width},}  have no authentication policy at all",
        "",
        f"  Governed by: a direct policy {c['direct_policy']:,}, the default {c['via_default']:,}, "
        f"nothing {c['no_policy']:,}.",
    ]
    if c["policy_not_found"]:
        lines.append(
            f"  {c['policy_not_found']:,} user(s) point at a policy that does not exist "
            "(treated as no policy)."
        )

    lines += ["", "Policies"]
    rows = [
        [
            policy_label(p.name)
            + (" [default]" if p.is_default else "")
            + (" [not found]" if p.name is not None and not p.exists else ""),
            f"{p.direct_users:,}",
            f"{p.default_users:,}",
            f"{p.total_users:,}",
            f"{p.smtp_exposed_users:,}",
            allowed_text(p),
        ]
        for p in report.policies
    ]
    if rows:
        lines += _table(
            ["POLICY", "DIRECT", "VIA DEFAULT", "TOTAL", "BASIC SMTP", "BASIC AUTH ALLOWED FOR"],
            rows,
            {1, 2, 3, 4},
        )
    else:
        lines.append("  none")
    lines.append(
        "  BASIC SMTP: users of the policy who can still use Basic SMTP AUTH (policy allows it "
        "and SMTP AUTH is not disabled for the mailbox or org)."
    )

    lines += _user_list(
        "Can still use Basic SMTP AUTH",
        report.smtp_exposed,
        show_users,
        ["their policy allows Basic SMTP (or they have none) and SMTP AUTH is not disabled"],
    )
    lines += _user_list(
        "No authentication policy at all",
        report.no_policy,
        show_users,
        ["no direct policy and no default: no policy blocks Basic auth for them"],
    )
    if report.dangling:
        lines += _user_list(
            "Assigned a policy that does not exist",
            report.dangling,
            show_users,
            ["the link names a removed policy; treated as no policy"],
        )
    lines += _sign_in_lines(report, show_users)
    return "\n".join(lines) + "\n"


def _sign_in_lines(report: ExposureReport, show_users: int | None) -> list[str]:
    """Who really used Basic auth in the window (the Entra sign-in log)."""
    log = report.sign_ins
    if log is None:
        return []
    title = f"Basic auth sign-ins, last {log.days} days (Entra sign-in log)"
    if not log.read:
        return ["", title, f"  not read: {log.reason}"]
    lines = ["", f"{title}: {log.events:,} legacy sign-ins since {log.since}"]
    active = report.active
    lines += ["", f"Used Basic auth in the window ({len(active):,})"]
    shown = active if show_users is None else active[:show_users]
    if shown:
        lines += _table(
            ["USER", "POLICY", "LAST BASIC USE"],
            [[clean(u.upn), policy_label(u.effective_policy), last_uses(u)] for u in shown],
            set(),
        )
        if len(active) > len(shown):
            lines.append(f"  ... and {len(active) - len(shown):,} more (--show-users all)")
    else:
        lines.append("  none")
    gone = report.used_not_allowed
    lines += ["", f"Used Basic auth in the window but no longer allowed ({len(gone):,})"]
    lines += [
        f"  {clean(u.upn)}: {p} (last {u.basic_use[p].last}); now blocked"
        for u, p in (gone if show_users is None else gone[:show_users])
    ] or ["  none"]
    lines += ["", f"Allowed but unused in the window ({len(log.unused):,})"]
    if log.unused:
        lines += _table(
            ["POLICY", "PROTOCOL", "USERS IT LETS THROUGH"],
            [[policy_label(r.policy), r.protocol, f"{r.users:,}"] for r in log.unused],
            {2},
        )
    else:
        lines.append("  none")
    return lines
