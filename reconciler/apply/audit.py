"""The apply audit log: append-only JSON lines, one record per change (and per replace step).

Each record is written and flushed as soon as its change finishes, so a run stopped at any
point (Ctrl-C, a crash, SIGKILL between records) leaves a file of whole, valid lines. Records
carry what an auditor needs (tenant, plan fingerprint, the change, result, Exchange's message,
attempts, timestamps) and nothing secret: the executor never has a credential to leak.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.files import open_private_append
from reconciler.model import Change, PolicyReplace
from reconciler.render.jsonplan import change_to_dict  # the plan JSON's own shape

__all__ = ["AuditLog", "MemoryAudit", "NullAudit", "change_to_dict", "default_audit_path"]

DEFAULT_AUDIT_DIR = ".authpolicy"


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds, e.g. 2026-11-27T18:40:00.123Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def default_audit_path(base: Path | None = None) -> Path:
    """`.authpolicy/audit-YYYYMMDD.jsonl` (UTC date) under `base` (default: the working dir)."""
    day = datetime.now(UTC).strftime("%Y%m%d")
    return (base or Path.cwd()) / DEFAULT_AUDIT_DIR / f"audit-{day}.jsonl"


class AuditSink(Protocol):
    """Where the executor sends one record per finished change."""

    def record(self, entry: dict[str, Any]) -> None: ...


class NullAudit:
    """An audit sink that keeps nothing (for callers that do not want a log)."""

    def record(self, entry: dict[str, Any]) -> None:
        return None


class MemoryAudit:
    """An audit sink that keeps records in a list (tests, the demo)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(entry)


class AuditLog:
    """An append-only JSON-lines file, created 0600 in a 0700 directory.

    `tenant` and `fingerprint` are stamped on every record. Safe to call from several threads.
    Use as a context manager; `close` fsyncs.
    """

    def __init__(self, path: Path, *, tenant: str, fingerprint: str) -> None:
        self.path = path
        self.tenant = tenant
        self.fingerprint = fingerprint
        self._lock = threading.Lock()
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        fd = open_private_append(str(path), "audit log")
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps(
            {"tenant": self.tenant, "fingerprint": self.fingerprint, **entry},
            sort_keys=False,
            separators=(",", ":"),
        )
        with self._lock:
            # One write per whole line, flushed at once: a stopped run never leaves half a record.
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def outcome_record(
    change: Change,
    result: str,
    *,
    message: str = "",
    attempts: int = 0,
    ts_start: str = "",
    ts_end: str = "",
    step: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The audit record of one change (or one step of a policy replace)."""
    if step is not None and isinstance(change, PolicyReplace):
        # A step names its policy; the full change (with every holder) is in the final record.
        change_data: dict[str, Any] = {"kind": change.kind, "policy": change.policy}
    else:
        change_data = change_to_dict(change)
    entry: dict[str, Any] = {"ts_start": ts_start, "ts_end": ts_end, "change": change_data}
    if step is not None:
        entry["step"] = step
    entry.update(result=result, message=message, attempts=attempts)
    if extra:
        entry.update(extra)
    return entry


def run_record(report: Any) -> dict[str, Any]:
    """The last record of a run: its counts, every re-send (the client's 503/reset/429/401
    retries and the executor's own), and the refusal that stopped it, if any."""
    return {
        "ts_end": utc_now(),
        "record": "run",
        "result": "summary",
        "counts": report.counts,
        "writes": report.writes,
        "retries": report.retries,
        "interrupted": report.interrupted,
        "denied": report.denied,
    }
