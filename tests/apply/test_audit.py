"""The audit log: append-only JSON lines, private file modes, no half lines."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from reconciler.apply.audit import AuditLog, change_to_dict, default_audit_path, outcome_record
from reconciler.model import FieldChange, PolicyCreate, PolicyUpdate


def test_records_append_across_runs_with_tenant_and_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "a.jsonl"
    change = PolicyUpdate("Block", (FieldChange("smtp", True, False),))
    with AuditLog(path, tenant="t1", fingerprint="sha256:1") as audit:
        audit.record(outcome_record(change, "applied", attempts=1, ts_start="s", ts_end="e"))
    with AuditLog(path, tenant="t1", fingerprint="sha256:2") as audit:
        audit.record(outcome_record(change, "failed", message="Exchange said no", attempts=3))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == [
        {
            "tenant": "t1",
            "fingerprint": "sha256:1",
            "record": "outcome",
            "ts_start": "s",
            "ts_end": "e",
            "change": {
                "kind": "policy_update",
                "policy": "Block",
                "fields": {"smtp": {"before": True, "after": False}},
                "affected_users": 0,
            },
            "result": "applied",
            "message": "",
            "attempts": 1,
        },
        {
            "tenant": "t1",
            "fingerprint": "sha256:2",
            "record": "outcome",
            "ts_start": "",
            "ts_end": "",
            "change": lines[0]["change"],
            "result": "failed",
            "message": "Exchange said no",
            "attempts": 3,
        },
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_create_shows_all_twelve_switches_and_default_path_is_dated(tmp_path: Path) -> None:
    data = change_to_dict(PolicyCreate("Devices", frozenset({"smtp"}), weakens=True))
    assert data["after"]["smtp"] is True
    assert sum(data["after"].values()) == 1 and len(data["after"]) == 12
    assert data["weakens"] is True
    path = default_audit_path(tmp_path)
    assert path.parent == tmp_path / ".authpolicy"
    assert path.name.startswith("audit-") and path.name.endswith(".jsonl") and len(path.name) == 20


def test_the_audit_log_is_never_a_link_a_device_or_readable_by_others(tmp_path: Path) -> None:
    import os

    import pytest

    from reconciler.apply.audit import AuditLog
    from reconciler.errors import AuthPolicyError

    victim = tmp_path / "victim"
    victim.write_text("keep\n", encoding="utf-8")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(victim)
    with pytest.raises(AuthPolicyError) as err:
        AuditLog(link, tenant="t", fingerprint="f")
    assert str(err.value).startswith(f"cannot open the audit log {link}: ")
    assert victim.read_text(encoding="utf-8") == "keep\n"
    with pytest.raises(AuthPolicyError) as err:
        AuditLog(Path("/dev/full"), tenant="t", fingerprint="f")
    assert str(err.value) == (
        "refusing to use the audit log /dev/full: it is not a regular file; name one"
    )
    wide = tmp_path / "wide.jsonl"
    wide.write_text("", encoding="utf-8")
    os.chmod(wide, 0o644)
    with pytest.raises(AuthPolicyError) as err:
        AuditLog(wide, tenant="t", fingerprint="f")
    assert str(err.value) == (
        f"refusing to use the audit log {wide}: its permissions are 0644, readable by others; "
        f"run `chmod 600 {wide}`"
    )


def test_a_line_torn_by_a_kill_is_ended_so_the_next_run_loses_nothing(tmp_path: Path) -> None:
    from reconciler.apply.reconcile import unfinished_intents

    path = tmp_path / "audit.jsonl"
    with AuditLog(path, tenant="t", fingerprint="sha256:1") as log:
        log.intend([{"record": "intent", "run_id": "r1", "key": "k1", "change": {"kind": "x"}}])
    # What a SIGKILL inside a large intent write leaves: the start of a line, no newline.
    with path.open("ab") as torn:
        torn.write(b'{"tenant":"t","fingerprint":"sha256:1","record":"intent","run_id":"r2","ke')
    with AuditLog(path, tenant="t", fingerprint="sha256:2") as log:
        big = [
            {"record": "intent", "run_id": "r3", "key": f"k{i}", "change": {"kind": "x" * 200}}
            for i in range(200)  # ~50 KB: one write, not a buffer's 8 KB pieces
        ]
        log.intend(big)
        log.record({"record": "run", "run_id": "r3"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1].endswith('"ke')  # the fragment stays alone on its line
    parsed = [json.loads(line) for i, line in enumerate(lines) if i != 1]
    assert [r["run_id"] for r in parsed] == ["r1"] + ["r3"] * 201
    assert path.read_bytes().endswith(b"\n")
    # Readers skip the fragment; every whole intent without an outcome is still found.
    assert {(r["run_id"], r["key"]) for r in unfinished_intents(path)} == {("r1", "k1")} | {
        ("r3", f"k{i}") for i in range(200)
    }


def test_an_intact_log_gets_no_extra_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for run in ("a", "b"):
        with AuditLog(path, tenant="t", fingerprint="f") as log:
            log.record({"record": "run", "run_id": run})
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert "" not in path.read_text(encoding="utf-8").splitlines()
