"""What an apply did: one outcome per planned change, plus the run's totals."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from reconciler.model import (
    Change,
    DefaultChange,
    MailboxSmtpChange,
    ReplaceResume,
    SmtpOrgChange,
    UserChange,
)

OutcomeStatus: TypeAlias = Literal["applied", "failed", "skipped", "not_found"]
OUTCOME_STATUSES: tuple[OutcomeStatus, ...] = ("applied", "failed", "skipped", "not_found")


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """The result of one planned change.

    `message` is Exchange's own text for a failure, or why a change was skipped. `attempts`
    counts the HTTP attempts the tenant client made (retries included); 0 when never tried.
    """

    change: Change
    status: OutcomeStatus
    message: str = ""
    attempts: int = 0
    ts_start: str = ""
    ts_end: str = ""


@dataclass
class ApplyReport:
    """Outcomes in plan order, and how the run went."""

    outcomes: list[ChangeOutcome] = field(default_factory=list)
    interrupted: bool = False
    retries: int = 0  # HTTP retries inside the client, plus batches the executor re-sent
    writes: int = 0  # state-changing calls the executor made (a $batch of 10 counts 10)
    problems: list[str] = field(default_factory=list)  # verification findings
    denied: str | None = None  # the first write refused for want of a role: apply stopped there
    # The audit log could not take an intent: that write and everything after it not sent.
    audit_error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """How many changes ended in each status (every status present, possibly 0)."""
        seen = Counter(o.status for o in self.outcomes)
        return {status: seen.get(status, 0) for status in OUTCOME_STATUSES}

    @property
    def failed(self) -> list[ChangeOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every change was applied (or its user no longer exists) and it all holds."""
        return (
            not self.interrupted
            and not self.problems
            and all(o.status in ("applied", "not_found") for o in self.outcomes)
        )


def describe_change(change: Change) -> str:
    """A short human label for a change, used in summaries, skip reasons and log lines."""
    if isinstance(change, UserChange):
        after = f"'{change.after}'" if change.after is not None else "no direct policy"
        return f"user {change.user} -> {after}"
    if isinstance(change, DefaultChange):
        after = f"'{change.after}'" if change.after is not None else "none"
        return f"default policy -> {after}"
    if isinstance(change, ReplaceResume):
        return f"finish the replace of policy '{change.policy}' (from '{change.holding}')"
    if isinstance(change, SmtpOrgChange):
        return f"organization SMTP AUTH -> {change.after}"
    if isinstance(change, MailboxSmtpChange):
        return f"mailbox {change.user} SMTP AUTH -> {change.after}"
    verb = {
        "policy_create": "create",
        "policy_update": "update",
        "policy_replace": "replace",
        "policy_delete": "delete",
    }[change.kind]
    return f"{verb} policy '{change.policy}'"
