"""`drift --format sarif|junit`: pending changes as findings on policies.yaml.

Changes are grouped as a reviewer reads them, never one finding per user: a policy's changes
(create, update, replace, delete), the organization default, the organization's SMTP AUTH,
and users (or mailboxes) per rule and target. Each group is located where the file declares
what the tenant drifted from: the policy's key, the rule, `default_policy`,
`smtp_auth.organization`, `remove_policies`/`prune_policies`, or the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler.findings.junit import Case, Suite, render_junit
from reconciler.findings.sarif import Alert, Rule, SarifRun, render_sarif
from reconciler.model import (
    DefaultChange,
    DesiredState,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    ReplaceResume,
    SmtpOrgChange,
    SourceLocation,
    UserChange,
)
from reconciler.render.escape import mask_upn

NAMES_SHOWN = 5

# The drift areas: rule id, JUnit name, what it means.
AREAS: tuple[tuple[str, str, str], ...] = (
    ("AP.DRIFT.POLICY", "authentication policies", "A policy differs from policies.yaml"),
    ("AP.DRIFT.DEFAULT", "organization default", "The organization default differs"),
    (
        "AP.DRIFT.ASSIGNMENT",
        "user assignments",
        "Users hold another policy than their rule gives them",
    ),
    ("AP.DRIFT.SMTP_ORG", "SMTP AUTH (organization)", "The organization's SMTP AUTH differs"),
    (
        "AP.DRIFT.SMTP_MAILBOX",
        "SMTP AUTH (mailboxes)",
        "Mailboxes' SMTP AUTH differs from their rule",
    ),
)


@dataclass
class _Group:
    area: str
    key: str
    message: str
    location: SourceLocation | None
    weakens: bool = False
    names: list[str] = field(default_factory=list)
    count: int = 0
    nouns: tuple[str, str] = ("user", "users")


def _policy_text(change: object) -> str:
    if isinstance(change, PolicyCreate):
        return f"policy {change.policy!r} is missing (create it)"
    if isinstance(change, PolicyUpdate | PolicyReplace):
        fields = ", ".join(
            f"{f.protocol} {'allowed' if f.before else 'blocked'} -> "
            f"{'allowed' if f.after else 'blocked'}"
            for f in change.fields
        )
        return f"policy {change.policy!r} differs: {fields}"
    if isinstance(change, ReplaceResume):
        return f"policy {change.policy!r}: an interrupted replace to finish"
    if isinstance(change, PolicyDelete):
        return f"policy {change.policy!r} is to be removed"
    return str(change)


def drift_groups(
    plan: Plan, desired: DesiredState | None, *, mask_users: bool = False
) -> list[_Group]:
    """The plan's changes in reviewer-sized groups, each located in the file."""
    mask: Callable[[str], str] = mask_upn if mask_users else (lambda u: u)

    def file_at(*keys: str) -> SourceLocation | None:
        if desired is None:
            return None
        return desired.location_of(*keys) or SourceLocation(desired.source, 1, 1)

    def policy_at(name: str) -> SourceLocation | None:
        spec = desired.policy(name) if desired is not None else None
        if spec is not None and spec.location is not None:
            return spec.location
        return file_at("remove_policies", "prune_policies", "policies")

    def rule_at(name: str) -> SourceLocation | None:
        if desired is not None:
            for rule in desired.assignments.rules:
                if rule.name == name:
                    return rule.location
        return file_at("assignments.unmatched", "smtp_auth.unmatched", "assignments")

    groups: dict[tuple[str, str], _Group] = {}
    for change in plan.changes:
        if isinstance(change, PolicyCreate | PolicyUpdate | PolicyReplace | ReplaceResume):
            key = ("AP.DRIFT.POLICY", change.policy.casefold())
            groups[key] = _Group(
                key[0], key[1], _policy_text(change), policy_at(change.policy), change.weakens
            )
        elif isinstance(change, PolicyDelete):
            key = ("AP.DRIFT.POLICY", change.policy.casefold())
            groups[key] = _Group(key[0], key[1], _policy_text(change), policy_at(change.policy))
        elif isinstance(change, DefaultChange):
            key = ("AP.DRIFT.DEFAULT", "default")
            groups[key] = _Group(
                key[0],
                key[1],
                f"the organization default is {change.before!r}, the file says {change.after!r} "
                f"({change.affected_users:,} users affected)",
                file_at("default_policy"),
                change.weakens,
            )
        elif isinstance(change, SmtpOrgChange):
            key = ("AP.DRIFT.SMTP_ORG", "organization")
            groups[key] = _Group(
                key[0],
                key[1],
                f"SMTP AUTH for the organization is {change.before or 'not shown'}, the file "
                f"says {change.after}",
                file_at("smtp_auth.organization", "smtp_auth"),
                change.weakens,
            )
        elif isinstance(change, UserChange | MailboxSmtpChange):
            area = (
                "AP.DRIFT.ASSIGNMENT" if isinstance(change, UserChange) else "AP.DRIFT.SMTP_MAILBOX"
            )
            target = change.after or "(no direct policy)"
            key = (area, f"{change.rule.casefold()}/{str(target).casefold()}")
            group = groups.get(key)
            if group is None:
                if isinstance(change, UserChange):
                    what = f"that rule {change.rule!r} gives {target!r} on another policy"
                    nouns = ("user", "users")
                else:
                    what = f"that rule {change.rule!r} sets to SMTP AUTH {target} set otherwise"
                    nouns = ("mailbox", "mailboxes")
                group = groups[key] = _Group(area, key[1], what, rule_at(change.rule))
                group.nouns = nouns
            group.count += 1
            group.weakens = group.weakens or change.weakens
            if len(group.names) < NAMES_SHOWN:
                group.names.append(mask(change.user))
    return list(groups.values())


def _message(group: _Group) -> str:
    text = group.message
    if group.count:
        more = (
            f" and {group.count - len(group.names):,} more"
            if group.count > len(group.names)
            else ""
        )
        noun = group.nouns[0] if group.count == 1 else group.nouns[1]
        text = f"{group.count:,} {noun} {text}: {', '.join(group.names)}{more}"
    if group.weakens:
        text += " (applying it weakens Basic-auth protection)"
    return text + ". Run `authpolicy plan` to review the change."


def drift_sarif_run(
    plan: Plan, desired: DesiredState | None, name: str | None = None, *, mask_users: bool = False
) -> SarifRun:
    tenant = name or plan.tenant_domain or plan.tenant
    rules = tuple(
        Rule(
            id=rule_id,
            name="Drift" + "".join(w.capitalize() for w in rule_id.split(".")[-1].split("_")),
            short=text,
            full=f"{text}: the tenant no longer matches the desired state in policies.yaml.",
            help="Review the pending change with `authpolicy plan` and apply it, or change "
            "policies.yaml to accept what the tenant holds.",
            tags=("drift", "security"),
            severity=6.0,
        )
        for rule_id, _, text in AREAS
    )
    alerts = tuple(
        Alert(g.area, "error" if g.weakens else "warning", _message(g), g.location, g.key)
        for g in drift_groups(plan, desired, mask_users=mask_users)
    )
    return SarifRun(
        tenant=tenant,
        category=f"authpolicy/drift/{tenant}/",
        rules=rules,
        alerts=alerts,
        default_file=desired.source if desired is not None else plan.config_file or "policies.yaml",
        properties={"fingerprint": plan.fingerprint},
    )


def drift_junit_suite(
    plan: Plan, desired: DesiredState | None, name: str | None = None, *, mask_users: bool = False
) -> Suite:
    tenant = name or plan.tenant_domain or plan.tenant
    groups = drift_groups(plan, desired, mask_users=mask_users)
    cases = []
    for rule_id, title, text in AREAS:
        mine = [g for g in groups if g.area == rule_id]
        if not mine:
            cases.append(Case(f"{title} match policies.yaml", f"authpolicy.drift.{tenant}", "pass"))
            continue
        details = "\n".join(
            f"- {_message(g)}" + (f" ({g.location})" if g.location else "") for g in mine
        )
        cases.append(
            Case(
                f"{title} match policies.yaml",
                f"authpolicy.drift.{tenant}",
                "fail",
                f"{text} ({len(mine)} finding{'s' if len(mine) != 1 else ''})",
                details,
            )
        )
    return Suite(f"authpolicy drift: {tenant}", tuple(cases))


def render_drift(
    items: Sequence[tuple[str | None, Plan, DesiredState | None]],
    fmt: str,
    *,
    mask_users: bool = False,
) -> str:
    """SARIF or JUnit of one plan (or a fleet's: one run or suite per tenant)."""
    if fmt == "sarif":
        return render_sarif([drift_sarif_run(p, d, n, mask_users=mask_users) for n, p, d in items])
    if fmt == "junit":
        return render_junit(
            [drift_junit_suite(p, d, n, mask_users=mask_users) for n, p, d in items]
        )
    raise ValueError(f"drift findings are sarif or junit, not {fmt!r}")
