"""Applying plans: executor, audit log, verification, stale-plan detection."""

from reconciler.apply.audit import AuditLog, MemoryAudit, NullAudit, default_audit_path
from reconciler.apply.executor import ApplyProgress, NoProgress, execute_plan
from reconciler.apply.report import ApplyReport, ChangeOutcome

__all__ = [
    "ApplyProgress",
    "ApplyReport",
    "AuditLog",
    "ChangeOutcome",
    "MemoryAudit",
    "NoProgress",
    "NullAudit",
    "default_audit_path",
    "execute_plan",
]
