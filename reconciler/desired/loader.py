"""policies.yaml -> DesiredState: read, check (YAML, schema, semantics), then build the model.

All problems are collected and reported together, sorted by line, one line each; a value
that failed one check is not checked again, so one mistake gives one message.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path as FilePath
from typing import Any

from reconciler.desired import limits
from reconciler.desired.problems import DOCUMENT, Finding, Path, Problem, render_path
from reconciler.desired.schema import schema_findings
from reconciler.desired.semantics import RECIPIENT_TYPE_BY_FOLDED, parse_date, semantic_findings
from reconciler.desired.source import Document, FileProblem, decode, parse
from reconciler.errors import ConfigError
from reconciler.model import (
    DEFAULT_RECIPIENT_TYPES,
    MATCH_KEYS,
    Assignments,
    DesiredState,
    Limit,
    MatchSpec,
    PolicySpec,
    Rule,
    Safety,
    SmtpAuthSpec,
    SourceLocation,
)


def load_desired_state(path: str | os.PathLike[str]) -> DesiredState:
    """Read and validate policies.yaml. Raises ConfigError listing every problem found."""
    filename = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer that never comes.
        fd = os.open(filename, os.O_RDONLY | os.O_NONBLOCK)
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            os.close(fd)
            raise ConfigError([f"{filename}: is a directory, not a file"])
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise ConfigError(
                [f"{filename}: is not a regular file (a FIFO, device or socket); name the file"]
            )
        with os.fdopen(fd, "rb") as handle:
            # Read one byte past the limit: enough to refuse a huge file without holding it
            # in memory.
            data = handle.read(limits.MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([f"{filename}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{filename}: is a directory, not a file"]) from None
    except PermissionError:
        raise ConfigError([f"{filename}: permission denied"]) from None
    except OSError as exc:
        raise ConfigError([f"{filename}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > limits.MAX_FILE_BYTES:
        size = _size_of(filename)
        raise ConfigError(
            [
                f"{filename}:1:1: {DOCUMENT}: the file is {size}; "
                f"the limit is {limits.MAX_FILE_BYTES:,} bytes (5 MiB)"
            ]
        )
    return parse_desired_state(data, filename)


def _size_of(filename: str) -> str:
    """The size to report for a file over the limit (a device or pipe has no useful size)."""
    try:
        size = FilePath(filename).stat().st_size
    except OSError:
        size = 0
    if size > limits.MAX_FILE_BYTES:
        return f"{size:,} bytes"
    return f"more than {limits.MAX_FILE_BYTES:,} bytes"


def parse_desired_state(data: bytes | str, filename: str = "policies.yaml") -> DesiredState:
    """Validate the content of a policies.yaml (bytes as read, or text) and build the model.

    `filename` is only used in messages and DesiredState.source. Raises ConfigError.
    """
    try:
        text = decode(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        doc = parse(text)
    except FileProblem as exc:
        raise ConfigError([exc.problem.format(filename)]) from None
    if doc.data is None:
        raise ConfigError(
            [
                Problem(
                    1, 1, DOCUMENT, "the file is empty; expected `version: 1` and policies"
                ).format(filename)
            ]
        )
    problems = check(doc)
    if problems:
        raise ConfigError([problem.format(filename) for problem in problems])
    return build(doc, filename)


# The name tests and tools use for "validate this text".
validate_text = parse_desired_state


def check(doc: Document) -> list[Problem]:
    """Every problem in a parsed document, one per cause, sorted by position."""
    return sorted(problem for _, problem in placed_problems(doc))


def placed_problems(doc: Document) -> list[tuple[Path, Problem]]:
    """Every problem with the path it concerns (a merged document of several files tells by
    the path which file to name)."""
    # Schema and semantic findings: one per path, and none inside a value already reported
    # or dropped while reading.
    findings: dict[Path, Finding] = {}

    def add(items: Iterable[Finding]) -> None:
        for finding in items:
            if finding.path not in findings and not _under(finding.path, doc.broken):
                findings[finding.path] = finding

    add(schema_findings(doc))
    reported = set(findings)
    add(semantic_findings(doc, lambda path: _under(path, reported) or _under(path, doc.broken)))

    rule_names = _rule_names(doc.data)
    # Reading problems (duplicate keys, tags) always stand: each is its own cause.
    return [
        (finding.path, place(doc, finding, rule_names))
        for finding in [*doc.problems, *findings.values()]
    ]


def place(doc: Document, finding: Finding, rule_names: list[str | None] | None = None) -> Problem:
    """A finding at its line and column in `doc`, its path as a breadcrumb."""
    if finding.position:
        line, column = finding.position
    elif finding.at_key:
        line, column = doc.key_position(finding.path)
    else:
        line, column = doc.position(finding.path)
    names = _rule_names(doc.data) if rule_names is None else rule_names
    return Problem(line, column, render_path(finding.path, names), finding.message)


def _under(path: Path, paths: set[Path]) -> bool:
    """Is `path` one of `paths` or inside one of them?"""
    return any(path[:length] in paths for length in range(len(path) + 1))


def _rule_names(data: object) -> list[str | None]:
    """Rule names for breadcrumbs (`assignments.rules[devices]`), None where there is none."""
    rules = data.get("assignments", {}) if isinstance(data, dict) else {}
    rules = rules.get("rules") if isinstance(rules, dict) else None
    if not isinstance(rules, list):
        return []
    return [
        rule["name"] if isinstance(rule, dict) and isinstance(rule.get("name"), str) else None
        for rule in rules
    ]


# --------------------------------------------------------------------------- building


def build(
    doc: Document, filename: str, file_of: Callable[[Path], str] | None = None
) -> DesiredState:
    """The model of a document that passed every check. `file_of` names the file each part
    was written in, for a merged document (a fleet's base and overlay); else `filename`."""
    data = doc.data
    assert isinstance(data, dict)  # guaranteed by the schema

    def location(path: Path, *, key: bool = False) -> SourceLocation:
        line, column = doc.key_position(path) if key else doc.position(path)
        return SourceLocation(file_of(path) if file_of else filename, line, column)

    policies = tuple(
        PolicySpec(name, frozenset(spec["allow"]), location(("policies", name), key=True))
        for name, spec in data.get("policies", {}).items()
    )
    assignments = data.get("assignments", {})
    rules = tuple(
        Rule(
            name=rule["name"],
            policy=_declared_name(rule["policy"], policies),
            match=_match_spec(rule["match"]),
            except_=_match_spec(rule["except"]) if "except" in rule else None,
            location=location(("assignments", "rules", index)),
            smtp_auth=rule.get("smtp_auth"),
            owner=rule.get("owner"),
            reason=rule.get("reason"),
            expires=parse_date(rule["expires"]) if "expires" in rule else None,
        )
        for index, rule in enumerate(assignments.get("rules", []))
    )
    smtp = data.get("smtp_auth", {})
    safety = data.get("safety", {})
    state = DesiredState(
        version=1,
        tenant=data.get("tenant"),
        policies=policies,
        remove_policies=tuple(data.get("remove_policies", [])),
        prune_policies=data.get("prune_policies", False),
        manage_default="default_policy" in data,
        default_policy=_declared_name(data.get("default_policy"), policies),
        assignments=Assignments(
            unmatched=assignments.get("unmatched", "ignore"),
            revoke_sessions=assignments.get("revoke_sessions", True),
            rules=rules,
            recipient_types=tuple(
                sorted(
                    {
                        RECIPIENT_TYPE_BY_FOLDED[t.casefold()]
                        for t in assignments.get("recipient_types", DEFAULT_RECIPIENT_TYPES)
                    }
                )
            ),
        ),
        safety=Safety(
            max_user_changes=_limit(safety.get("max_user_changes")),
            max_policy_deletes=_limit(safety.get("max_policy_deletes")),
            max_active_users_blocked=safety.get("max_active_users_blocked"),
        ),
        smtp_auth=SmtpAuthSpec(
            organization=smtp.get("organization"), unmatched=smtp.get("unmatched", "ignore")
        ),
        sign_in_days=(data.get("evidence", {}).get("sign_in_logs") or {}).get("days"),
        source=filename,
        locations={
            ".".join(path): location(path, key=True) for path in LOCATED_KEYS if _has(data, path)
        },
    )
    return _with_canonical(state)


# The settings whose place in the file findings point at (DesiredState.locations).
LOCATED_KEYS: tuple[tuple[str, ...], ...] = (
    ("tenant",),
    ("default_policy",),
    ("policies",),
    ("remove_policies",),
    ("prune_policies",),
    ("assignments",),
    ("assignments", "unmatched"),
    ("assignments", "rules"),
    ("smtp_auth",),
    ("smtp_auth", "organization"),
    ("smtp_auth", "unmatched"),
    ("evidence",),
    ("safety",),
)


def _has(data: object, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _declared_name(name: str | None, policies: tuple[PolicySpec, ...]) -> str | None:
    """A reference as the policy is declared (references compare case-insensitively)."""
    if name is None:
        return None
    folded = name.casefold()
    return next((p.name for p in policies if p.name.casefold() == folded), name)


def _match_spec(spec: object) -> MatchSpec:
    if spec == "all":
        return MatchSpec(match_all=True)
    assert isinstance(spec, dict)
    values: dict[str, Any] = {key: tuple(spec.get(key, ())) for key in MATCH_KEYS}
    # One spelling per recipient type, so the planner can compare with Get-User's values.
    values["recipient_type"] = tuple(
        RECIPIENT_TYPE_BY_FOLDED[v.casefold()] for v in values["recipient_type"]
    )
    return MatchSpec(**values)


def _limit(value: object) -> Limit | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Limit(float(value.rstrip("%")), percent=True)
    assert isinstance(value, int)
    return Limit(float(value))


# --------------------------------------------------------------------------- canonical form


def _with_canonical(state: DesiredState) -> DesiredState:
    """`state` with `canonical`: the same meaning always gives the same data.

    Lists whose order carries no meaning are sorted (allow, remove_policies, match values);
    values compared case-insensitively are casefolded; defaults are written out, so leaving
    a key out and writing its default give the same result. Rule order is kept: it matters.
    """
    canonical: dict[str, object] = {
        "version": state.version,
        "tenant": state.tenant.casefold() if state.tenant else None,
        "policies": {
            spec.name: {"allow": sorted(spec.allow)}
            for spec in sorted(state.policies, key=lambda p: p.name.casefold())
        },
        "remove_policies": sorted(
            {n.casefold(): n for n in state.remove_policies}.values(), key=str.casefold
        ),
        "prune_policies": state.prune_policies,
        "manage_default": state.manage_default,
        "default_policy": state.default_policy,
        "assignments": {
            "unmatched": state.assignments.unmatched,
            "revoke_sessions": state.assignments.revoke_sessions,
            "recipient_types": list(state.assignments.recipient_types),
            "rules": [
                {
                    "name": rule.name,
                    "policy": rule.policy,
                    "match": _canonical_match(rule.match),
                    "except": _canonical_match(rule.except_) if rule.except_ else None,
                    "smtp_auth": rule.smtp_auth,
                    "owner": rule.owner,
                    "reason": rule.reason,
                    "expires": rule.expires.isoformat() if rule.expires else None,
                }
                for rule in state.assignments.rules
            ],
        },
        "smtp_auth": {
            "organization": state.smtp_auth.organization,
            "unmatched": state.smtp_auth.unmatched,
        },
        "safety": {
            "max_user_changes": _canonical_limit(state.safety.max_user_changes),
            "max_policy_deletes": _canonical_limit(state.safety.max_policy_deletes),
            "max_active_users_blocked": state.safety.max_active_users_blocked,
        },
        "evidence": {"sign_in_days": state.sign_in_days},
    }
    return replace(state, canonical=canonical)


def _canonical_match(spec: MatchSpec) -> object:
    if spec.match_all:
        return "all"
    result: dict[str, list[str]] = {}
    for key in MATCH_KEYS:
        values = getattr(spec, key)
        if values:
            result[key] = sorted({v.casefold() for v in values})
    return result


def _canonical_limit(limit: Limit | None) -> str | int | None:
    if limit is None:
        return None
    return str(limit) if limit.percent else int(limit.value)
