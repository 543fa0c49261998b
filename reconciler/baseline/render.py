"""`report --baseline` in five formats: text, markdown, json, sarif and junit."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.baseline.checks import (
    BASELINES,
    CHECKS,
    SOURCES,
    BaselineResult,
    Check,
    CheckResult,
)
from reconciler.findings.junit import Case, CaseStatus, Suite, render_junit
from reconciler.findings.sarif import Alert, Level, Rule, SarifRun, render_sarif
from reconciler.render.escape import markdown_text
from reconciler.report.text import clean

BASELINE_FORMATS: tuple[str, ...] = ("text", "markdown", "json", "sarif", "junit")
BASELINE_FORMAT_VERSION = 1
_LABEL = {"pass": "pass", "fail": "FAIL", "not_assessed": "n/a"}
# GitHub's security-severity per baseline level: a SHALL or L1 control failing is high.
_SEVERITY = {"SHALL": 8.0, "L1": 7.0, "-": 5.0}


def ids_text(result: CheckResult, baselines: Sequence[str]) -> str:
    return ", ".join(result.check.ids(baselines))


def _where(result: CheckResult) -> list[str]:
    return [str(f.location) for f in result.findings if f.location is not None]


def render_text(outcome: BaselineResult) -> str:
    counts = outcome.counts()
    lines = [f"Baseline checks for {clean(outcome.tenant)}"]
    lines += [f"  {SOURCES[b]}" for b in outcome.baselines]
    if outcome.made_at:
        lines.append(f"  read {outcome.made_at}")
    for r in outcome.results:
        lines.append("")
        status = _LABEL[r.status]
        if r.status == "not_assessed" and outcome.strict:
            status = "FAIL"
        lines.append(f"{status:<5} {ids_text(r, outcome.baselines)}: {r.check.title}")
        lines.append(f"      {clean(r.summary)}")
        if r.reason:
            lines.append(f"      not assessed: {clean(r.reason)}")
        for f in r.findings:
            if r.status != "fail":
                break
            at = f" ({f.location})" if f.location is not None else ""
            lines.append(f"      - {clean(f.message)}{at}")
            if f.objects:
                more = f" and {f.count - len(f.objects):,} more" if f.count > len(f.objects) else ""
                lines.append(f"        {', '.join(clean(o) for o in f.objects)}{more}")
        if r.status != "pass" and r.fix:
            lines.append(f"      fix: {r.fix}")
    lines.append("")
    lines.append(
        f"{counts['pass']} pass, {counts['fail']} fail, {counts['not_assessed']} not assessed"
        + (" (--strict: not assessed fails)" if outcome.strict else "")
    )
    return "\n".join(lines) + "\n"


def render_markdown(outcome: BaselineResult) -> str:
    counts = outcome.counts()
    lines = [
        f"## Baseline checks for {markdown_text(outcome.tenant)}",
        "",
        f"**{counts['pass']} pass, {counts['fail']} fail, {counts['not_assessed']} not "
        f"assessed**" + (" (--strict)" if outcome.strict else ""),
        "",
        "| Status | Id | Check | Finding |",
        "|---|---|---|---|",
    ]
    for r in outcome.results:
        status = {"pass": "✅ pass", "fail": "❌ fail", "not_assessed": "⚪ not assessed"}[r.status]
        finding = r.reason if r.status == "not_assessed" else r.summary
        lines.append(
            f"| {status} | {ids_text(r, outcome.baselines)} | {markdown_text(r.check.title)} | "
            f"{markdown_text(finding)} |"
        )
    failing = [r for r in outcome.results if r.status != "pass"]
    for r in failing:
        lines += ["", f"### {ids_text(r, outcome.baselines)}: {markdown_text(r.check.title)}", ""]
        for f in r.findings:
            at = f" ({markdown_text(str(f.location))})" if f.location is not None else ""
            named = ""
            if f.objects:
                more = f" and {f.count - len(f.objects):,} more" if f.count > len(f.objects) else ""
                named = f": {', '.join(markdown_text(o) for o in f.objects)}{more}"
            lines.append(f"- {markdown_text(f.message)}{at}{named}")
        if r.fix:
            lines.append(f"- **Fix:** {markdown_text(r.fix)}")
    lines.append("")
    lines.append("Sources: " + "; ".join(SOURCES[b] for b in outcome.baselines) + ".")
    return "\n".join(lines) + "\n"


def result_json(outcome: BaselineResult) -> dict[str, object]:
    return {
        "format_version": BASELINE_FORMAT_VERSION,
        "tenant": outcome.tenant,
        "made_at": outcome.made_at,
        "config_file": outcome.config_file,
        "baselines": {b: SOURCES[b] for b in outcome.baselines},
        "strict": outcome.strict,
        "summary": outcome.counts(),
        "checks": [
            {
                "id": r.check.primary(outcome.baselines),
                "ids": list(r.check.ids(outcome.baselines)),
                "key": r.check.key,
                "title": r.check.title,
                "status": r.status,
                "summary": r.summary,
                "reason": r.reason or None,
                "evidence": dict(r.evidence),
                "findings": [
                    {
                        "message": f.message,
                        "location": None
                        if f.location is None
                        else {
                            "file": f.location.file,
                            "line": f.location.line,
                            "column": f.location.column,
                        },
                        "group": f.group,
                        "objects": list(f.objects),
                        "count": f.count,
                    }
                    for f in r.findings
                ],
                "fix": r.fix or None,
            }
            for r in outcome.results
        ],
    }


def render_json(outcomes: Sequence[BaselineResult] | BaselineResult) -> str:
    if isinstance(outcomes, BaselineResult):
        return json.dumps(result_json(outcomes), indent=2, default=str) + "\n"
    doc = {
        "format_version": BASELINE_FORMAT_VERSION,
        "tenants": [result_json(o) for o in outcomes],
    }
    return json.dumps(doc, indent=2, default=str) + "\n"


def sarif_rule(check: Check, baselines: Sequence[str]) -> Rule:
    ids = check.ids(baselines)
    level = next((c.level for c in check.controls if c.baseline in baselines), "-")
    return Rule(
        id=check.primary(baselines),
        name="".join(w.capitalize() for w in check.key.split("-")),
        short=check.title,
        full=f"{check.title}. {check.rationale}",
        help=f"{check.rationale} Ids: {', '.join(ids)}.",
        tags=("security", "compliance", *ids),
        severity=_SEVERITY.get(level, 5.0),
    )


def sarif_run(outcome: BaselineResult, name: str | None = None) -> SarifRun:
    """One run: every check a rule; failing (and, with --strict, not-assessed) checks give
    one result per finding."""
    baselines = outcome.baselines
    checks = [c for c in CHECKS if any(ctl.baseline in baselines for ctl in c.controls)]
    alerts = []
    for r in outcome.results:
        if not outcome.failed(r):
            continue
        rule = r.check.primary(baselines)
        level: Level = "error" if r.status == "fail" else "warning"
        findings = r.findings or ()
        if not findings:
            alerts.append(
                Alert(rule, level, f"{r.summary}: {r.reason}. Fix: {r.fix}", None, r.check.key)
            )
        for f in findings:
            named = f" ({', '.join(f.objects)}{' ...' if f.count > len(f.objects) else ''})"
            alerts.append(
                Alert(
                    rule,
                    level,
                    f"{f.message}{named if f.objects else ''}. Fix: {r.fix}",
                    f.location,
                    f"{r.check.key}/{f.group}",
                )
            )
    tenant = name or outcome.tenant
    return SarifRun(
        tenant=tenant,
        category=f"authpolicy/baseline/{tenant}/",
        rules=tuple(sarif_rule(c, baselines) for c in checks),
        alerts=tuple(alerts),
        default_file=outcome.config_file or "policies.yaml",
        properties={"baselines": [SOURCES[b] for b in baselines]},
    )


def render_baseline_sarif(outcomes: Sequence[tuple[str | None, BaselineResult]]) -> str:
    return render_sarif([sarif_run(o, name) for name, o in outcomes])


def junit_suite(outcome: BaselineResult, name: str | None = None) -> Suite:
    tenant = name or outcome.tenant
    cases = []
    for r in outcome.results:
        ids = ids_text(r, outcome.baselines)
        failed = outcome.failed(r)
        status: CaseStatus = (
            "fail" if failed else "skipped" if r.status == "not_assessed" else "pass"
        )
        details = [r.summary]
        if r.reason:
            details.append(f"not assessed: {r.reason}")
        for f in r.findings:
            at = f" ({f.location})" if f.location else ""
            details.append(f"- {f.message}{at}")
            if f.objects:
                details.append(f"  {', '.join(f.objects)}")
        if r.fix:
            details.append(f"fix: {r.fix}")
        cases.append(
            Case(
                name=f"{ids}: {r.check.title}",
                classname=f"authpolicy.baseline.{tenant}",
                status=status,
                message=r.reason if r.status == "not_assessed" else r.summary,
                details="\n".join(details),
            )
        )
    return Suite(f"authpolicy baseline: {tenant}", tuple(cases), outcome.made_at)


def render_baseline_junit(outcomes: Sequence[tuple[str | None, BaselineResult]]) -> str:
    return render_junit([junit_suite(o, name) for name, o in outcomes])


def render_baseline(outcome: BaselineResult, fmt: str) -> str:
    if fmt == "text":
        return render_text(outcome)
    if fmt == "markdown":
        return render_markdown(outcome)
    if fmt == "json":
        return render_json(outcome)
    if fmt == "sarif":
        return render_baseline_sarif([(None, outcome)])
    if fmt == "junit":
        return render_baseline_junit([(None, outcome)])
    raise ValueError(f"unknown baseline format {fmt!r}; expected one of {BASELINE_FORMATS}")


__all__ = ["BASELINES", "BASELINE_FORMATS", "render_baseline"]
