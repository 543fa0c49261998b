"""Evidence before blocking, end to end over HTTPS with real msal: the Entra sign-in log read
from the emulator's Graph room, charged to the changes that take a protocol away, in the text,
markdown and JSON plans and the report; the max_active_users_blocked guard; a tenant without
the licence, an app without the permission, throttled pages, and a 100,000-event window.

Expected figures are computed from the emulator's own sign-in log and raw state (by GUID),
not from the reconciler's code."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.report.markdown import md
from tests.commands.emulated import ROOT_POLICIES, connect, run_cli

pytestmark = pytest.mark.integration

EVIDENCE = "evidence:\n  sign_in_logs: {days: 30}\n"
GUARD = "  max_active_users_blocked: 0\n"


def _file(tmp_path: Path, *, guard: bool = True, evidence: bool = True) -> Path:
    text = ROOT_POLICIES.read_text(encoding="utf-8")
    text = text.replace("\nsafety:\n", "\n" + (EVIDENCE if evidence else "") + "safety:\n")
    if guard:
        text = text.replace("  max_policy_deletes: 1\n", "  max_policy_deletes: 1\n" + GUARD)
    path = tmp_path / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _emulator(tmp_path: Path, **settings: Any) -> Emulator:
    return Emulator(
        EmulatorSettings(
            users=300,
            seed=7,
            state_dir=tmp_path / "emu",
            apps={"nograph": {"roles": ["exchange_administrator"]}},
            **settings,
        )
    )


@pytest.fixture
def emu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with _emulator(tmp_path) as emu:
        connect(monkeypatch, emu)
        monkeypatch.setenv("AUTHPOLICY_TODAY", "2026-12-27")
        monkeypatch.chdir(tmp_path)
        yield emu


def _imap_users(emu: Emulator) -> tuple[set[str], str]:
    """Users with a successful IMAP4 sign-in in the emulator's log, and the latest one."""
    events = [e for e in emu.service.graph.events() if e.client_app == "IMAP4" and not e.error_code]
    return {e.user_id for e in events}, max(e.created for e in events)


def test_plan_carries_evidence_per_change_and_the_guard_blocks_apply(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _file(tmp_path)
    users, last = _imap_users(emu)
    assert users, "the synthetic log has IMAP users"
    code, out, err = run_cli(capsys, "plan", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["evidence"]["status"] == "read"
    assert plan["evidence"]["days"] == 30
    update = next(c for c in plan["changes"] if c["kind"] == "policy_update")
    # The drifted default allows imap and smtp; the file blocks both: every IMAP user loses it.
    assert update["evidence"]["imap"] == {"users": len(users), "last": last}
    assert update["evidence"]["smtp"]["users"] == 0
    assert plan["evidence"]["active_users_blocked"] == len(users)
    guard = next(g for g in plan["guards"] if g["name"] == "max_active_users_blocked")
    assert guard["count"] == len(users) and guard["limit"] == 0
    # Changes that take nothing away carry no evidence.
    assert all("evidence" not in c for c in plan["changes"] if c["kind"] == "policy_delete")

    code, text, _ = run_cli(capsys, "plan")
    assert f"imap by {len(users)} users (last {last[:10]})" in text
    assert f"{len(users)} active users blocked." in text
    code, markdown, _ = run_cli(capsys, "plan", "--format", "markdown")
    assert f"imap by {len(users)} users" in markdown
    # A PR comment carries counts and dates, never sign-in times or IP addresses.
    assert last not in markdown and "198.51.100." not in markdown

    before = emu.stats()["writes_changed_state"]
    code, out, _ = run_cli(capsys, "apply", "--auto-approve", "--audit-log", "a.jsonl")
    assert code == 3
    assert "who used Basic auth in the last 30 days would lose it" in out
    assert emu.stats()["writes_changed_state"] == before  # nothing written

    code, out, err = run_cli(
        capsys,
        "apply",
        "--auto-approve",
        "--audit-log",
        "a.jsonl",
        "--force=max_active_users_blocked",
    )
    assert code == 0, out + err


def test_an_exception_for_the_active_users_clears_the_guard(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path)
    users, _ = _imap_users(emu)
    upns = sorted(
        u["UserPrincipalName"]
        for u in emu.dump_state()["users"]
        if u["ExternalDirectoryObjectId"] in users
    )
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "  SMTP relay devices:\n",
        "  IMAP until migration:\n    allow: [imap]\n  SMTP relay devices:\n",
    ).replace(
        "    - name: devices\n",
        "    - name: imap-migration\n"
        "      policy: IMAP until migration\n"
        "      owner: it-mail@contoso.com\n"
        "      expires: 2027-02-01\n"
        f"      match: {{users: [{', '.join(upns)}]}}\n"
        "    - name: devices\n",
    )
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(capsys, "plan", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["evidence"]["active_users_blocked"] == 0
    assert not [g for g in plan["guards"] if g["name"] == "max_active_users_blocked"]
    code, out, err = run_cli(capsys, "apply", "--auto-approve", "--audit-log", "a.jsonl")
    assert code == 0, out + err
    code, out, _ = run_cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0, out


def test_a_tenant_without_the_licence_plans_and_says_why(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.set_faults(graph_premium_licence=False)
    _file(tmp_path, guard=False)
    code, out, err = run_cli(capsys, "plan", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["evidence"]["status"] == "missing"
    assert "P1/P2" in plan["evidence"]["reason"]
    assert any(w.startswith("no sign-in evidence: ") for w in plan["warnings"])
    update = next(c for c in plan["changes"] if c["kind"] == "policy_update")
    assert update["evidence"]["imap"] == {"users": None, "last": None}
    assert not plan["guards"] or all(
        g["name"] != "max_active_users_blocked" for g in plan["guards"]
    )
    # Asked for the guard: with nothing to prove who still uses Basic auth, apply is blocked.
    _file(tmp_path, guard=True)
    code, out, _ = run_cli(capsys, "apply", "--auto-approve", "--audit-log", "a.jsonl")
    assert code == 3
    assert "the sign-in log could not be read" in out


def test_an_app_without_the_permission_plans_and_says_why(
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    connect(monkeypatch, emu, app="nograph")
    _file(tmp_path, guard=False)
    code, out, err = run_cli(capsys, "plan", "--format", "json")
    assert code == 0, err
    evidence = json.loads(out)["evidence"]
    assert evidence["status"] == "missing"
    assert "AuditLog.Read.All" in evidence["reason"]
    # The app's secret never reaches the reason, the plan or the log.
    secret = emu.connection_env(app="nograph")["AZURE_CLIENT_SECRET"]
    assert secret not in out and secret not in err


def test_a_file_without_evidence_reads_no_sign_ins(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _file(tmp_path, guard=False, evidence=False)
    code, out, _ = run_cli(capsys, "plan", "--format", "json")
    assert code == 0
    assert "evidence" not in json.loads(out)
    assert "graph:signIns" not in emu.stats()["requests"]


def test_throttled_pages_are_waited_out_and_count_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _emulator(tmp_path, graph_page_size=1000) as emu:
        connect(monkeypatch, emu)
        monkeypatch.chdir(tmp_path)
        _file(tmp_path, guard=False)
        code, out, err = run_cli(capsys, "plan", "--format", "json")
        assert code == 0, err
        calm = json.loads(out)["changes"]
        emu.set_faults(graph_throttle_budget=3, throttle_window_seconds=1.0)
        code, out, err = run_cli(capsys, "plan", "--format", "json")
        assert code == 0, err
        throttled = emu.stats()["requests"]["graph:signIns"]
        assert throttled.get("429", 0) > 0
        assert json.loads(out)["evidence"]["status"] == "read"
        assert json.loads(out)["changes"] == calm


@pytest.mark.parametrize("cursors", ["1", "4"])
def test_a_window_of_100000_sign_ins(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cursors: str,
) -> None:
    with _emulator(tmp_path, sign_in_extra_events=100_000) as emu:
        connect(monkeypatch, emu)
        monkeypatch.setenv("AUTHPOLICY_READ_CONCURRENCY", cursors)
        emu.set_faults(graph_date_upper_bound="supported")  # the default refuses slices
        monkeypatch.chdir(tmp_path)
        _file(tmp_path, guard=False)
        events = [e for e in emu.service.graph.events() if e.client_app != "Browser"]
        legacy = [e for e in events if e.client_app != "Mobile Apps and Desktop clients"]
        assert len(legacy) > 100_000
        users, last = _imap_users(emu)
        code, out, err = run_cli(capsys, "plan", "--format", "json")
        assert code == 0, err
        plan = json.loads(out)
        update = next(c for c in plan["changes"] if c["kind"] == "policy_update")
        assert update["evidence"]["imap"] == {"users": len(users), "last": last}
        pages = emu.stats()["requests"]["graph:signIns"]
        # One request per page of 1,000 (the legacy filter is applied by the server); in time
        # slices (2 per cursor), at most one more per slice, each ending on a page of its own.
        whole = math.ceil(len(legacy) / 1000)
        if cursors == "1":
            assert pages == {"200": whole}
        else:
            assert set(pages) == {"200"} and whole < pages["200"] <= whole + 2 * int(cursors)


def test_sign_ins_read_in_time_slices_count_as_one_read_and_fall_back_when_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _emulator(tmp_path, sign_in_extra_events=5_000, graph_page_size=200) as emu:
        connect(monkeypatch, emu)
        monkeypatch.chdir(tmp_path)
        _file(tmp_path, guard=False)
        evidence = {}
        for mode, cursors, upper in [
            ("one", "1", "supported"),
            ("slices", "8", "supported"),
            ("refused", "8", "refused"),
        ]:
            monkeypatch.setenv("AUTHPOLICY_READ_CONCURRENCY", cursors)
            emu.set_faults(graph_date_upper_bound=upper)
            emu.reset_stats()
            code, out, err = run_cli(capsys, "plan", "--format", "json")
            assert code == 0, err
            plan = json.loads(out)
            assert plan["evidence"]["status"] == "read"
            # (each plan has its own "since": now less 30 days)
            said = {k: v for k, v in plan["evidence"].items() if k not in ("requests", "since")}
            evidence[mode] = (said, [c.get("evidence") for c in plan["changes"]])
            statuses = emu.stats()["requests"]["graph:signIns"]
            if mode == "refused":  # one 400 (the first slice asked), then the one cursor
                assert statuses.get("400", 0) >= 1
        assert evidence["slices"] == evidence["one"] == evidence["refused"]


def test_report_shows_last_use_used_but_blocked_and_allowed_but_unused(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users, last = _imap_users(emu)
    state = emu.dump_state()
    upn_of = {u["ExternalDirectoryObjectId"]: u["UserPrincipalName"] for u in state["users"]}
    code, out, err = run_cli(capsys, "report", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["sign_ins"]["status"] == "read"
    active = {u["upn"]: u["basic_auth_use"] for u in report["users"] if u["basic_auth_use"]}
    assert {upn_of[i] for i in users} <= set(active)
    assert max(active[upn_of[i]]["imap"]["last"] for i in users) == last
    assert report["sign_ins"]["used_but_no_longer_allowed"] == []

    code, markdown, _ = run_cli(capsys, "report", "--format", "markdown")
    assert md(last[:10]) in markdown and md(last) not in markdown  # dates only in a PR comment
    code, detailed, _ = run_cli(capsys, "report", "--format", "markdown", "--sign-in-details")
    assert md(last) in detailed

    # Block everything (forced past the guard); give one user a POP exception nobody uses.
    path = _file(tmp_path, guard=False)
    someone = next(
        u["UserPrincipalName"]
        for u in state["users"]
        if u["ExternalDirectoryObjectId"] not in users
        and u["RecipientTypeDetails"] == "UserMailbox"
        and not u["Name"].startswith(("scanner-", "breakglass"))
    )
    text = (
        path.read_text(encoding="utf-8")
        .replace(
            "  SMTP relay devices:\n", "  POP legacy:\n    allow: [pop]\n  SMTP relay devices:\n"
        )
        .replace(
            "    - name: devices\n",
            "    - name: pop-exception\n      policy: POP legacy\n"
            f"      match: {{users: [{someone}]}}\n"
            "    - name: devices\n",
        )
    )
    path.write_text(text, encoding="utf-8")
    code, out, _ = run_cli(capsys, "plan", "--format", "json")
    plan = json.loads(out)
    assert {"policy": "POP legacy", "protocol": "pop", "users": 1, "rules": ["pop-exception"]} in (
        plan["evidence"]["unused"]
    )
    assert any("a candidate to remove" in w and "POP legacy" in w for w in plan["warnings"])
    code, out, err = run_cli(capsys, "apply", "--auto-approve", "--audit-log", "a.jsonl")
    assert code == 0, out + err
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    report = json.loads(out)
    gone = report["sign_ins"]["used_but_no_longer_allowed"]
    assert {(g["upn"], g["protocol"]) for g in gone} >= {(upn_of[i], "imap") for i in users}
    assert {"policy": "POP legacy", "protocol": "pop", "users": 1} in (
        report["sign_ins"]["allowed_but_unused"]
    )
    code, text_report, _ = run_cli(capsys, "report")
    assert "Used Basic auth in the window but no longer allowed" in text_report


def test_evidence_never_makes_a_saved_plan_stale_and_its_guard_is_recomputed(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _file(tmp_path)
    code, out, err = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 0, err
    saved = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))
    assert saved["evidence"]["status"] == "read"
    # The evidence moves under the saved plan: the log can no longer be read.
    emu.set_faults(graph_premium_licence=False)
    code, out, err = run_cli(
        capsys, "apply", "plan.json", "--auto-approve", "--audit-log", "a.jsonl"
    )
    assert code == 3, out + err  # not stale; blocked by the guard computed from the fresh read
    assert "is stale" not in out + err
    assert "the sign-in log could not be read" in out
    # Editing the saved file's evidence or guards talks apply past nothing.
    saved["guards"] = []
    saved["evidence"]["active_users_blocked"] = 0
    (tmp_path / "edited.json").write_text(json.dumps(saved), encoding="utf-8")
    code, out, err = run_cli(
        capsys, "apply", "edited.json", "--auto-approve", "--audit-log", "a.jsonl"
    )
    assert code == 3, out + err
    code, out, err = run_cli(
        capsys,
        "apply",
        "plan.json",
        "--auto-approve",
        "--audit-log",
        "a.jsonl",
        "--force=max_active_users_blocked",
    )
    assert code == 0, out + err
