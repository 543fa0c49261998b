"""SARIF 2.1.0 for GitHub code scanning (and any SARIF viewer), built with sarif-pydantic.

One run per tenant: its `automationDetails.id` (`authpolicy/VERB/TENANT/`) is the category, so
a fleet's tenants upload side by side and a run never closes another tenant's alerts. Rules are
the checks (or drift kinds); each result is one group (a policy, a rule, the organization), never
one per user, located at the policies.yaml line it concerns, or the file when none. Its
`partialFingerprints` come from the tenant, rule and group, not the line, so moving a rule
within the file, or a scheduled run, does not reopen an alert. Within GitHub's per-run limits
(25,000 results, 1,000 locations per result): at most MAX_RESULTS results, one location each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import quote

from reconciler import __version__
from reconciler.model import SourceLocation

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
FINGERPRINT_KEY = "authpolicyFinding/v1"
MAX_RESULTS = 5_000  # GitHub keeps the first 5,000 of a run's results by severity

Level = Literal["error", "warning", "note"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str  # PascalCase-ish words, as SARIF viewers show it
    short: str
    full: str
    help: str
    tags: tuple[str, ...] = ()
    severity: float | None = None  # GitHub's security-severity (0-10)


@dataclass(frozen=True, slots=True)
class Alert:
    rule: str  # Rule.id
    level: Level
    message: str
    location: SourceLocation | None
    group: str  # stable key within the rule (policy, rule or setting name)


@dataclass(frozen=True, slots=True)
class SarifRun:
    tenant: str
    category: str  # automationDetails.id
    rules: tuple[Rule, ...]
    alerts: tuple[Alert, ...]
    default_file: str = "policies.yaml"  # where an alert without a location points
    properties: dict[str, object] = field(default_factory=dict)


def artifact_uri(file: str) -> str:
    """A repository-relative URI for a file as given on the command line (code scanning maps
    it onto the checkout); an absolute path under the working directory is made relative."""
    path = Path(file)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            return path.resolve().as_uri()
    posix = PurePosixPath(*path.parts) if path.parts else PurePosixPath(file)
    text = str(posix)
    while text.startswith("./"):
        text = text[2:]
    return quote(text, safe="/-._~")


def fingerprint(tenant: str, rule: str, group: str) -> str:
    digest = hashlib.sha256("\x1f".join((tenant.casefold(), rule, group)).encode("utf-8"))
    return digest.hexdigest()[:32]


def render_sarif(runs: Sequence[SarifRun]) -> str:
    """The SARIF log of these runs, as JSON text."""
    from sarif_pydantic import (
        ArtifactLocation,
        Location,
        Message,
        PhysicalLocation,
        Region,
        ReportingConfiguration,
        ReportingDescriptor,
        Result,
        Run,
        Sarif,
        Tool,
        ToolDriver,
    )
    from sarif_pydantic.sarif import RunAutomationDetails

    sarif_runs = []
    for run in runs:
        index = {rule.id: n for n, rule in enumerate(run.rules)}
        results = []
        for alert in run.alerts[:MAX_RESULTS]:
            where = alert.location
            region = Region(start_line=where.line, start_column=where.column) if where else None
            results.append(
                Result(
                    rule_id=alert.rule,
                    rule_index=index[alert.rule],
                    level=alert.level,
                    message=Message(text=alert.message),
                    locations=[
                        Location(
                            physical_location=PhysicalLocation(
                                artifact_location=ArtifactLocation(
                                    uri=artifact_uri(where.file if where else run.default_file)
                                ),
                                region=region,
                            )
                        )
                    ],
                    partial_fingerprints={
                        FINGERPRINT_KEY: fingerprint(run.tenant, alert.rule, alert.group)
                    },
                    properties={"tenant": run.tenant, "group": alert.group},
                )
            )
        properties = dict(run.properties)
        if len(run.alerts) > MAX_RESULTS:
            properties["results_left_out"] = len(run.alerts) - MAX_RESULTS
        sarif_runs.append(
            Run(
                tool=Tool(
                    driver=ToolDriver(
                        name="authpolicy",
                        semantic_version=__version__,
                        version=__version__,
                        rules=[
                            ReportingDescriptor(
                                id=rule.id,
                                name=rule.name,
                                short_description=Message(text=rule.short),
                                full_description=Message(text=rule.full),
                                help=Message(text=rule.help),
                                default_configuration=ReportingConfiguration(level="error"),
                                properties={
                                    "tags": list(rule.tags),
                                    **(
                                        {"security-severity": f"{rule.severity:.1f}"}
                                        if rule.severity is not None
                                        else {}
                                    ),
                                },
                            )
                            for rule in run.rules
                        ],
                    )
                ),
                automation_details=RunAutomationDetails(id=run.category),
                results=results,
                properties={"tenant": run.tenant, **properties},
            )
        )
    log = Sarif(version="2.1.0", schema_uri=SARIF_SCHEMA, runs=sarif_runs)
    return log.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n"
