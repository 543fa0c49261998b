"""After a killed apply: the intents its audit log holds without an outcome, read back.

The write-ahead audit (audit.py) puts an `intent` record on disk before each write is sent and
an `outcome` record after. A run killed in between leaves intents without outcomes: writes that
may or may not have reached the tenant. The next apply that appends to the same audit log finds
them, looks each object up in the snapshot it has just read, and records what it found
(`reconciled`: took effect, did not, the object is gone, or unknown when the snapshot did not
read that kind of object), so the log tells the whole story of every write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reconciler.apply.audit import change_key, utc_now
from reconciler.model import TenantSnapshot, TenantUser

MAX_AUDIT_SCAN_BYTES = 256 * 2**20  # a log larger than this is not scanned (said so)


def unfinished_intents(path: Path) -> list[dict[str, Any]]:
    """Intent records of `path` that no outcome (or earlier reconciliation) answers."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_AUDIT_SCAN_BYTES:
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return _unanswered(_records(text.splitlines()))


def _records(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill mid-write of another tool: skip it
        if isinstance(record, dict):
            yield record


def _unanswered(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    intents: dict[tuple[str, str], dict[str, Any]] = {}
    answered: set[tuple[str, str]] = set()
    for record in records:
        kind = record.get("record")
        change = record.get("change")
        if kind == "intent" and isinstance(change, dict):
            intents[(str(record.get("run_id")), str(record.get("key")))] = record
        elif kind == "outcome" and isinstance(change, dict) and record.get("step") is None:
            answered.add((str(record.get("run_id")), change_key(change)))
        elif kind == "reconciled":
            answered.add((str(record.get("of_run")), str(record.get("key"))))
    return [intent for key, intent in intents.items() if key not in answered]


def reconcile(intents: list[dict[str, Any]], snapshot: TenantSnapshot) -> list[dict[str, Any]]:
    """One `reconciled` record per unanswered intent: what the tenant shows now."""
    users = {u.id.lower(): u for u in snapshot.users} if intents else {}
    return [
        {
            "record": "reconciled",
            "ts_end": utc_now(),
            "of_run": intent.get("run_id"),
            "key": intent.get("key"),
            "change": intent["change"],
            "result": _found(intent["change"], snapshot, users),
        }
        for intent in intents
    ]


def _found(change: dict[str, Any], snapshot: TenantSnapshot, users: dict[str, TenantUser]) -> str:
    """took_effect | not_in_effect | gone | unknown, for one planned change."""
    kind = change.get("kind")
    after = change.get("after")
    if kind in ("user_assign", "user_clear", "mailbox_smtp_change"):
        if not snapshot.users:
            return "unknown"
        user = users.get(str(change.get("user_id", "")).lower())
        if user is None:
            return "gone"
        if kind == "mailbox_smtp_change":
            if not snapshot.mailboxes_read:
                return "unknown"
            return "took_effect" if user.smtp_auth == after else "not_in_effect"
        return "took_effect" if _same(user.policy, after) else "not_in_effect"
    if kind == "default_change":
        return "took_effect" if _same(snapshot.default_policy, after) else "not_in_effect"
    if kind == "smtp_org_change":
        if not snapshot.smtp_org_read:
            return "unknown"
        return "took_effect" if snapshot.smtp_org == after else "not_in_effect"
    policy = snapshot.policy(str(change.get("policy", "")))
    if kind == "policy_delete":
        return "took_effect" if policy is None else "not_in_effect"
    if policy is None:
        return "not_in_effect" if kind == "policy_create" else "gone"
    wanted = change.get("after")
    if isinstance(wanted, dict):  # create / replace: all 12 switches
        allowed = {name for name, on in wanted.items() if on}
        return "took_effect" if policy.allow == allowed else "not_in_effect"
    fields = change.get("fields") or {}
    holds = all((name in policy.allow) == bool(v.get("after")) for name, v in fields.items())
    return "took_effect" if holds else "not_in_effect"


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return str(a).casefold() == str(b).casefold()


def summary(records: list[dict[str, Any]]) -> str:
    """One line for the apply output."""
    found: dict[str, int] = {}
    for record in records:
        found[record["result"]] = found.get(record["result"], 0) + 1
    parts = ", ".join(
        f"{count} {result.replace('_', ' ')}" for result, count in sorted(found.items())
    )
    return (
        f"The audit log holds {len(records)} write(s) of an earlier apply that stopped before "
        f"recording their outcome; read back from the tenant: {parts} (recorded as "
        "`reconciled`)."
    )
