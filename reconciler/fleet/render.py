"""The fleet's combined output: a summary table (tenant, changes, weakens, guard, error), then
each tenant's own plan; markdown keeps within a PR comment's size with a collapsible section
per tenant; JSON is one document with a row per tenant and where its plan file is."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.fleet.run import TenantOutcome, summary_rows, worst
from reconciler.render import render_plan
from reconciler.render.escape import visible
from reconciler.report.markdown import md

FLEET_MARKER = "<!-- authpolicy:fleet-plan -->"
# GitHub refuses a comment over 65,536 characters; the table and the truncation note fit below.
COMMENT_BUDGET = 60_000


def _status(row: dict[str, Any]) -> str:
    if row["error"]:
        return "error"
    if row["guards"]:
        return "blocked: " + ", ".join(row["guards"])
    if row["changes"]:
        return "changes"
    return "no changes"


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["name"],
        row["tenant"],
        "-" if row["changes"] is None else f"{row['changes']:,}",
        "-" if row["weakens"] is None else f"{row['weakens']:,}",
        "-" if row["active_users_blocked"] is None else f"{row['active_users_blocked']:,}",
        _status(row),
        row["error"] or "",
    ]


HEADER = ["tenant", "id", "changes", "weakens", "active users blocked", "status", "error"]


def render_text(outcomes: Sequence[TenantOutcome], verb: str, show_users: int | None = 20) -> str:
    rows = summary_rows(outcomes)
    table = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(visible(str(r[i]))) for r in table) for i in range(len(HEADER))]
    lines = [f"authpolicy {verb} for {len(rows)} tenant(s)", ""]
    for r in table:
        lines.append(
            "  " + "  ".join(visible(str(c)).ljust(widths[i]) for i, c in enumerate(r)).rstrip()
        )
    for outcome in outcomes:
        lines += ["", f"=== {outcome.entry.name} ({outcome.entry.tenant}) ==="]
        if outcome.plan is not None:
            lines.append(render_plan(outcome.plan, "text", show_users=show_users).rstrip("\n"))
        else:
            lines += [f"error: {line}" for line in outcome.problems or [outcome.error or ""]]
        lines += [f"warning: {w}" for w in outcome.warnings]
    code = worst([o.exit_code for o in outcomes])
    lines += ["", f"Fleet: {len(rows)} tenant(s), exit code {code} (the worst tenant's)."]
    return "\n".join(lines) + "\n"


def render_markdown(
    outcomes: Sequence[TenantOutcome], verb: str, show_users: int | None = 20
) -> str:
    rows = summary_rows(outcomes)
    head = [
        FLEET_MARKER,
        f"## authpolicy {verb}: {len(rows)} tenant(s)",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(md(c) if c else "" for c in _cells(r)) + " |" for r in rows),
        "",
    ]
    sections = []
    for outcome in outcomes:
        title = f"{md(outcome.entry.name)}: {_status(summary_rows([outcome])[0])}"
        if outcome.plan is not None:
            body = render_plan(outcome.plan, "markdown", show_users=show_users)
        else:
            body = "\n".join(
                f"- error: {md(line)}" for line in outcome.problems or [outcome.error or ""]
            )
        sections.append(
            [
                "<details>",
                f"<summary>{title}</summary>",
                "",
                body.rstrip("\n"),
                "",
                "</details>",
                "",
            ]
        )
    out = list(head)
    used = sum(len(line) + 1 for line in out)
    left_out = []
    for outcome, section in zip(outcomes, sections, strict=True):
        size = sum(len(line) + 1 for line in section)
        if used + size > COMMENT_BUDGET:
            left_out.append(outcome.entry.name)
            continue
        out += section
        used += size
    if left_out:
        out.append(
            f"{len(left_out)} tenant plan(s) left out to keep this comment under GitHub's size "
            f"limit ({', '.join(md(n) for n in left_out[:10])}"
            f"{' ...' if len(left_out) > 10 else ''}); each is in its plan file."
        )
    return "\n".join(out) + "\n"


def render_json(outcomes: Sequence[TenantOutcome], verb: str) -> str:
    doc = {
        "format_version": 1,
        "verb": verb,
        "exit_code": int(worst([o.exit_code for o in outcomes])),
        "tenants": summary_rows(outcomes),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def render_fleet(
    outcomes: Sequence[TenantOutcome], verb: str, fmt: str, show_users: int | None = 20
) -> str:
    if fmt == "json":
        return render_json(outcomes, verb)
    if fmt == "markdown":
        return render_markdown(outcomes, verb, show_users)
    return render_text(outcomes, verb, show_users)
