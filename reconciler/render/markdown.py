"""The Markdown renderer, for pull-request comments.

Summary table first, details in `<details>` blocks (``diff`` fences so GitHub colours `+`/`-`),
a hidden marker line so CI can find and update its own comment, and a size budget: GitHub
refuses comments over 65,536 characters, so past MARKDOWN_BUDGET the details are cut with a
pointer to the full JSON plan. Every tenant-side string is escaped (see escape.py).
"""

from __future__ import annotations

import re

from reconciler.render.escape import code_fence, html_text, markdown_text
from reconciler.render.lines import Line, Section, plan_sections
from reconciler.render.view import PROPAGATION_NOTE, PlanView, summary_line

MARKDOWN_BUDGET = 60_000
MARKER = "<!-- authpolicy:plan -->"
TRUNCATED = (
    "**The plan is too long for a comment and was cut here.** The full plan is in the JSON "
    "plan (`authpolicy plan --out PLAN.json`, or your pipeline's plan artifact)."
)

_ROWS = (
    ("~", "Unfinished replaces to finish", "replace_resume"),
    ("+", "Policies to create", "policy_create"),
    ("~", "Policies to update", "policy_update"),
    ("-/+", "Policies to replace", "policy_replace"),
    ("-", "Policies to delete", "policy_delete"),
    ("~", "Organization default", "default_change"),
    ("~", "Organization SMTP AUTH", "smtp_org_change"),
    ("~", "Mailbox SMTP AUTH settings", "mailbox_smtp_change"),
    ("+", "Users assigned a policy", "user_assign"),
    ("-", "Users cleared (the default applies)", "user_clear"),
)


def _tenant_code(tenant: str) -> str:
    # Inline code cannot hold a backtick run safely; escaped prose can hold anything.
    return markdown_text(tenant)


def _summary_table(view: PlanView) -> list[str]:
    rows = ["| | Change | Count |", "|:-:|---|--:|"]
    for symbol, label, key in _ROWS:
        count = view.summary.get(key, 0)
        optional = ("policy_replace", "replace_resume", "smtp_org_change", "mailbox_smtp_change")
        if count or key not in optional:
            rows.append(f"| `{symbol}` | {label} | {count:,} |")
    rows.append(f"| | **Total** | **{view.total:,}** |")
    return rows


def _diff_line(line: Line) -> str:
    # GitHub colours a diff line by its first character; details keep their parent's symbol.
    symbol = line.symbol if line.symbol != "-/+" else "!"
    return f"{symbol} {'    ' if line.detail else ''}{line.text}"


def _details(title: str, body: list[str], open_: bool = False) -> list[str]:
    return [
        f"<details{' open' if open_ else ''}><summary>{title}</summary>",
        "",
        *body,
        "",
        "</details>",
        "",
    ]


def _section_block(section: Section, lines: list[Line] | None = None) -> list[str]:
    chosen = list(section.lines) if lines is None else lines
    title = f"{html_text(section.title)} ({section.count:,})"
    return _details(title, code_fence([_diff_line(line) for line in chosen], "diff"))


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def render_markdown(
    view: PlanView, *, show_users: int | None = 20, budget: int = MARKDOWN_BUDGET
) -> str:
    """The plan as a PR comment, under `budget` characters."""
    name = _tenant_code(view.tenant_domain or view.tenant)
    if view.tenant_domain:
        name += f" ({_tenant_code(view.tenant)})"
    head = [MARKER, f"### authpolicy plan for {name}", ""]
    head += [*_summary_table(view), ""]
    if view.guards:
        head += [
            "> [!CAUTION]",
            "> **Blocked by safety guards:** apply refuses this plan without `--force`.",
        ]
        head += [f"> - {markdown_text(g)}" for g in view.guards]
        head.append("")
    if view.weakening:
        n = view.weakening
        head += [
            "> [!WARNING]",
            f"> **{n:,} change{'s' if n != 1 else ''} weaken{'s' if n == 1 else ''} security** "
            "(marked `[weakens security]` below).",
            "",
        ]
    tail = [f"{markdown_text(summary_line(view))}", "", f"Fingerprint: `{view.fingerprint}`"]
    if view.total:
        tail += ["", f"<sub>{markdown_text(PROPAGATION_NOTE)}</sub>"]

    warnings = (
        _details(
            f"Warnings ({len(view.warnings):,})",
            [f"- {markdown_text(w)}" for w in view.warnings],
            open_=True,
        )
        if view.warnings
        else []
    )
    sections = plan_sections(view, show_users)
    blocks = [_section_block(s) for s in sections]
    full = head + [line for block in blocks for line in block] + warnings + tail
    if _size(full) <= budget:
        return "\n".join(full) + "\n"
    return _truncated(head, sections, warnings, tail, budget)


def _truncated(
    head: list[str], sections: list[Section], warnings: list[str], tail: list[str], budget: int
) -> str:
    """Keep head, tail and a notice; fill the rest with as many plan lines as fit."""
    notice = ["> [!NOTE]", f"> {TRUNCATED}", ""]
    out = head + notice
    # Room for the tail, and for the fences and tags that close a cut block.
    room = budget - _size(out) - _size(tail) - 200
    warnings_cut = warnings if _size(warnings) <= room // 4 else _cut_warnings(warnings, room // 4)
    room -= _size(warnings_cut)
    for section in sections:
        block = _section_block(section)
        if _size(block) <= room:
            out += block
            room -= _size(block)
            continue
        kept: list[Line] = []
        used = _size(_section_block(section, []))
        for line in section.lines:
            cost = len(_diff_line(line)) + 1
            if used + cost > room - 80:
                break
            kept.append(line)
            used += cost
        if kept:
            kept.append(Line(" ", f"... cut: {len(section.lines) - len(kept):,} more lines"))
            out += _section_block(section, kept)
        break
    out += warnings_cut + tail
    return "\n".join(out) + "\n"


def _cut_warnings(warnings: list[str], room: int) -> list[str]:
    kept: list[str] = []
    for line in warnings:
        if _size(kept) + len(line) + 1 > room - 100:
            break
        kept.append(line)
    items = sum(1 for line in warnings if re.match(r"- ", line))
    shown = sum(1 for line in kept if re.match(r"- ", line))
    kept.append(f"- ... and {items - shown:,} more warnings (see the JSON plan)")
    return [*kept, "", "</details>", ""]
