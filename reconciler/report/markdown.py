"""The exposure report as GitHub-flavoured Markdown (for an issue, a wiki page or an audit file).

Every tenant value (policy names, UPNs) is escaped: a hostile policy name must not inject
links, HTML, mentions or table cells into the page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reconciler.report.model import ExposureReport, UserRow, last_uses
from reconciler.report.text import allowed_text, org_smtp_text

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~@:])")


def md(value: str) -> str:
    """Escape a tenant value for Markdown: special characters, HTML and line breaks."""
    one_line = "".join(ch if ch.isprintable() else " " for ch in value)
    escaped = _MD_SPECIAL.sub(r"\\\1", one_line)
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _policy(name: str | None) -> str:
    return "*(no policy)*" if name is None else md(name)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _user_section(
    title: str, users: Sequence[UserRow], show_users: int | None, describe: str
) -> list[str]:
    lines = ["", f"### {title} ({len(users):,})", "", describe, ""]
    if not users:
        lines.append("None.")
        return lines
    shown = users if show_users is None else users[:show_users]
    rows = [
        [
            md(u.upn),
            _policy(u.effective_policy),
            u.via,
            md(u.smtp_reason),
        ]
        for u in shown
    ]
    lines += ["<details><summary>Show users</summary>", ""]
    lines += _table(["User", "Effective policy", "Via", "Why"], rows, set())
    hidden = len(users) - len(shown)
    if hidden:
        lines += ["", f"... and {hidden:,} more (`authpolicy report --show-users all`)."]
    lines += ["", "</details>"]
    return lines


def render_markdown(
    report: ExposureReport, *, show_users: int | None = 20, sign_in_details: bool = False
) -> str:
    """The report as Markdown: headline table, per-policy table, collapsible user lists."""
    c = report.counts()
    default = (
        "none"
        if report.default_policy is None
        else md(report.default_policy) + ("" if report.default_policy_found else " (not found)")
    )
    lines = [
        f"## Basic-auth exposure report: {md(report.tenant)}",
        *(["", f"Read {md(report.made_at)}."] if report.made_at else []),
        "",
        f"Default policy: **{default}** · SMTP AUTH org-wide (Get-TransportConfig): "
        f"**{org_smtp_text(report)}**",
        "",
        *_table(
            ["", "Users"],
            [
                ["Users", f"{c['users']:,}"],
                ["Protected (Basic auth blocked wherever it still works)", f"{c['protected']:,}"],
                [
                    "... of them only because SMTP AUTH is off (their policy allows Basic SMTP)",
                    f"{c['smtp_policy_allows_but_smtp_auth_off']:,}",
                ],
                ["**Can still use Basic SMTP AUTH**", f"**{c['smtp_basic_auth_possible']:,}**"],
                ["No authentication policy at all", f"{c['no_policy']:,}"],
                ["Governed by a direct policy", f"{c['direct_policy']:,}"],
                ["Governed by the default policy", f"{c['via_default']:,}"],
            ]
            + (
                [["Assigned a policy that does not exist", f"{c['policy_not_found']:,}"]]
                if c["policy_not_found"]
                else []
            ),
            {1},
        ),
        "",
        "### Policies",
        "",
    ]
    rows = [
        [
            _policy(p.name)
            + (" (default)" if p.is_default else "")
            + (" (not found)" if p.name is not None and not p.exists else ""),
            f"{p.direct_users:,}",
            f"{p.default_users:,}",
            f"{p.total_users:,}",
            f"{p.smtp_exposed_users:,}",
            md(allowed_text(p)),
        ]
        for p in report.policies
    ]
    lines += _table(
        [
            "Policy",
            "Direct",
            "Via default",
            "Total",
            "Basic SMTP AUTH possible",
            "Basic auth allowed for",
        ],
        rows,
        {1, 2, 3, 4},
    )
    lines += _user_section(
        "Can still use Basic SMTP AUTH",
        report.smtp_exposed,
        show_users,
        "Their policy allows Basic SMTP (or they have none) and SMTP AUTH is not disabled "
        "for their mailbox or the organization.",
    )
    lines += _user_section(
        "No authentication policy at all",
        report.no_policy,
        show_users,
        "No direct policy and no default: no policy blocks Basic auth for them.",
    )
    if report.dangling:
        lines += _user_section(
            "Assigned a policy that does not exist",
            report.dangling,
            show_users,
            "The link names a removed policy; treated as no policy.",
        )
    lines += _sign_in_section(report, show_users, sign_in_details)
    return "\n".join(lines) + "\n"


def _sign_in_section(report: ExposureReport, show_users: int | None, details: bool) -> list[str]:
    """Counts and dates only, unless `details` (sign-in times then appear; never addresses)."""
    log = report.sign_ins
    if log is None:
        return []
    title = f"### Basic auth sign-ins, last {log.days} days"
    if not log.read:
        return ["", title, "", f"Not read: {md(log.reason)}"]
    active = report.active
    gone = report.used_not_allowed
    lines = [
        "",
        title,
        "",
        f"{log.events:,} legacy sign-ins since {log.since[:10]}; {len(active):,} users used "
        f"Basic auth; {len(gone):,} of those uses are now blocked; {len(log.unused):,} "
        "policy/protocol pairs allow Basic auth nobody used.",
    ]
    shown = active if show_users is None else active[:show_users]
    if shown:
        lines += ["", "<details><summary>Used Basic auth in the window</summary>", ""]
        lines += _table(
            ["User", "Policy", "Last Basic use"],
            [
                [md(u.upn), _policy(u.effective_policy), md(last_uses(u, dates_only=not details))]
                for u in shown
            ],
            set(),
        )
        lines += ["", "</details>"]
    if gone:
        lines += ["", "#### Used Basic auth in the window but no longer allowed", ""]
        lines += _table(
            ["User", "Protocol", "Last use"],
            [
                [md(u.upn), p, md((u.basic_use[p].last or "")[: None if details else 10])]
                for u, p in (gone if show_users is None else gone[:show_users])
            ],
            set(),
        )
    if log.unused:
        lines += ["", "#### Allowed but unused in the window", ""]
        lines += _table(
            ["Policy", "Protocol", "Users it lets through"],
            [[_policy(r.policy), r.protocol, f"{r.users:,}"] for r in log.unused],
            {2},
        )
    return lines
