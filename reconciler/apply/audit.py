"""The apply audit log: append-only JSON lines, written ahead of every write.

Before a write (or a group of writes) is sent, one `intent` record per change is written,
flushed and fsynced (once per group); when the intent cannot be written, nothing is sent. When
the change finishes, its `outcome` record follows (and one per replace step), flushed at once;
a closing `run` record ends the run. Each record, and each group of intents, is one unbuffered
write. So a run stopped at any point (Ctrl-C, a crash) leaves whole, valid lines; a SIGKILL
that lands inside a large intent write can tear that last line, which readers skip and the next
run ends with a newline (those intents were never sent). Every write that may have reached the
tenant has its intent on disk: the next apply reads intents without an outcome back from the
tenant and records what it found (`reconciled`). Records carry what an auditor needs (tenant,
plan fingerprint, the run, the app's client id, the CI run when known, --force and the guards
it overrode, whether sessions are revoked, the change, result, Exchange's message, attempts,
timestamps) and nothing secret: the executor never has a credential to leak.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.files import open_private_append
from reconciler.model import Change, PolicyReplace, ReplaceResume
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
    """Where the executor sends an intent before each write and a record per finished change."""

    def record(self, entry: dict[str, Any]) -> None: ...

    def intend(self, entries: list[dict[str, Any]]) -> None:
        """Write these intent records durably before the writes are sent; raise (OSError) when
        that is not possible, and then the executor sends nothing."""
        ...


class NullAudit:
    """An audit sink that keeps nothing (for callers that do not want a log)."""

    def record(self, entry: dict[str, Any]) -> None:
        return None

    def intend(self, entries: list[dict[str, Any]]) -> None:
        return None


class MemoryAudit:
    """An audit sink that keeps records in lists (tests): `records` the outcomes, `intents` the
    intents, `log` both in the order they came."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.intents: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(entry)
            self.log.append(entry)

    def intend(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            self.intents.extend(entries)
            self.log.extend(entries)


class AuditLog:
    """An append-only JSON-lines file, created 0600 in a 0700 directory.

    `tenant` and `fingerprint` are stamped on every record. Safe to call from several threads.
    Use as a context manager; `close` fsyncs.
    """

    def __init__(
        self,
        path: Path,
        *,
        tenant: str,
        fingerprint: str,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.tenant = tenant
        self.fingerprint = fingerprint
        # Stamped on every record: run id, client id, CI run, forced guards, revoke_sessions.
        self.context = dict(context or {})
        self._lock = threading.Lock()
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        self._fd: int | None = open_private_append(str(path), "audit log")
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        """A run SIGKILLed inside a large write can leave its last line without its newline (the
        kernel stops a regular-file write between pages on a fatal signal). End that line, so the
        fragment stays one unreadable line (readers skip it) and our first record is not glued
        onto it. A torn line is always an intent group that was never sent: intents are fsynced
        before their writes go out."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as existing:
            existing.seek(size - 1)
            if existing.read(1) != b"\n":
                self._write(b"\n")

    def _write(self, data: bytes) -> None:
        """All of `data` in as few write syscalls as the kernel allows (normally one): a buffered
        file would split a large intent group into 8 KB writes, each a point where a kill tears
        the line. Called with the lock held."""
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _line(self, entry: dict[str, Any]) -> str:
        return json.dumps(
            {"tenant": self.tenant, "fingerprint": self.fingerprint, **self.context, **entry},
            sort_keys=False,
            separators=(",", ":"),
        )

    def record(self, entry: dict[str, Any]) -> None:
        line = self._line(entry)
        data = (line + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise ValueError(f"the audit log {self.path} is closed")
            # One unbuffered write per whole line: a stopped run never leaves half a record.
            self._write(data)

    def intend(self, entries: list[dict[str, Any]]) -> None:
        """The intents of one group of writes, on disk (fsync) before any of them is sent."""
        data = "".join(self._line(entry) + "\n" for entry in entries).encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise ValueError(f"the audit log {self.path} is closed")
            self._write(data)
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

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
    if step is not None and isinstance(change, PolicyReplace | ReplaceResume):
        # A step names its policy; the full change (with every holder) is in the final record.
        change_data: dict[str, Any] = {"kind": change.kind, "policy": change.policy}
    else:
        change_data = change_to_dict(change)
    entry: dict[str, Any] = {
        "record": "outcome",
        "ts_start": ts_start,
        "ts_end": ts_end,
        "change": change_data,
    }
    if step is not None:
        entry["step"] = step
    entry.update(result=result, message=message, attempts=attempts)
    if extra:
        entry.update(extra)
    return entry


def intent_record(change: Change) -> dict[str, Any]:
    """The record written, durably, before `change` is sent."""
    return {
        "record": "intent",
        "ts": utc_now(),
        "key": change_key(change),
        "change": change_to_dict(change),
    }


def change_key(change: Change | dict[str, Any]) -> str:
    """Which object a change writes, as one string: what pairs an intent with its outcome, and
    a saved change with the fresh one (staleness). A change or its plan-JSON dict."""
    if isinstance(change, dict):
        kind = str(change.get("kind"))
        user_id, policy = change.get("user_id", ""), change.get("policy", "")
    else:
        kind = change.kind
        user_id, policy = getattr(change, "user_id", ""), getattr(change, "policy", "")
    if kind in ("user_assign", "user_clear", "mailbox_smtp_change"):
        family = "mailbox" if kind == "mailbox_smtp_change" else "user"
        return f"{family}:{str(user_id).lower()}"
    if kind in ("default_change", "smtp_org_change"):
        return kind
    return policy_key(str(policy), kind)


def policy_key(policy: str, kind: str) -> str:
    """change_key of a policy change."""
    return f"policy:{policy.casefold()}:{kind}"


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
        "audit_error": report.audit_error,
    }
