"""What a plan needs read from the tenant, derived from the rules."""

from __future__ import annotations

from reconciler.model import DesiredState, MatchSpec, SnapshotNeeds
from reconciler.plan.rules import OPTIONAL_ATTRIBUTES


def _specs(desired: DesiredState) -> list[MatchSpec]:
    specs: list[MatchSpec] = []
    for rule in desired.assignments.rules:
        specs.append(rule.match)
        if rule.except_ is not None:
            specs.append(rule.except_)
    return specs


def snapshot_needs(desired: DesiredState) -> SnapshotNeeds:
    """The user attributes and groups the rules reference (match and except alike).

    Group names are deduplicated case-insensitively, keeping the first spelling in rule order,
    so two rules spelling one group differently ask for it once.
    """
    attributes: set[str] = set()
    groups: dict[str, str] = {}
    for spec in _specs(desired):
        for attribute in OPTIONAL_ATTRIBUTES:
            if getattr(spec, attribute):
                attributes.add(attribute)
        for group in spec.member_of:
            groups.setdefault(group.casefold(), group)
    return SnapshotNeeds(
        attributes=frozenset(attributes),
        groups=frozenset(groups.values()),
        smtp_org=desired.manages_smtp,
        mailboxes=desired.manages_mailboxes,
        sign_in_days=desired.evidence_days,
        # Conditional Access can defeat an SMTP AUTH exception (a warning says so).
        conditional_access=any(r.smtp_auth == "enabled" for r in desired.assignments.rules),
    )
