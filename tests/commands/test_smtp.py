"""SMTP AUTH as desired state, end to end against the emulator over HTTPS: all three switches
declared, planned, applied and converged; drift when somebody turns SMTP AUTH back on; an
expiring exception that warns, then expires and moves its users; saved plans on a busy tenant;
and the export round trip."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from reconciler.model import SnapshotNeeds
from reconciler.tenant.connect import open_tenant
from tests.commands.emulated import ROOT_POLICIES, connect, emulator, run_cli

pytestmark = pytest.mark.integration

BEFORE_EXPIRY = "2026-12-27"  # the sample's devices exception expires on 2027-01-10
EXPIRED = "2027-01-10"


@pytest.fixture
def emu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator(tmp_path, users=300, seed=7) as emu:
        connect(monkeypatch, emu)
        monkeypatch.setenv("AUTHPOLICY_TODAY", BEFORE_EXPIRY)
        monkeypatch.chdir(tmp_path)
        shutil.copy(ROOT_POLICIES, tmp_path / "policies.yaml")
        yield emu


def _mailboxes(emu: Emulator) -> dict[str, bool | None]:
    return {u["UserPrincipalName"]: u["_smtp_disabled"] for u in emu.dump_state()["users"]}


def _apply(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "apply", "--auto-approve", "--audit-log", "audit.jsonl", *extra)


def test_declare_plan_apply_converges_on_all_three_switches(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "plan", "--format", "json", "--detailed-exitcode")
    assert code == 2
    plan = json.loads(out)
    assert plan["as_of"] == BEFORE_EXPIRY and plan["mailboxes_read"] is True
    kinds = [c["kind"] for c in plan["changes"]]
    # Phase order: the org switch after the default, mailboxes after it, users after them.
    assert kinds.index("smtp_org_change") < kinds.index("mailbox_smtp_change")
    assert kinds.index("mailbox_smtp_change") < kinds.index("user_assign")
    org = next(c for c in plan["changes"] if c["kind"] == "smtp_org_change")
    assert (org["before"], org["after"]) == (None, "disabled")  # hidden: not shown, so unknown
    boxes = [c for c in plan["changes"] if c["kind"] == "mailbox_smtp_change"]
    before = _mailboxes(emu)
    # Every explicit value outside the exception is reset to follow the org; the scanners keep
    # theirs (the rule says enabled) and are not listed.
    assert {c["user"] for c in boxes} == {
        upn for upn, value in before.items() if value is not None and not upn.startswith("scanner-")
    }
    assert all(c["after"] == "organization" and c["rule"] == "everyone" for c in boxes)
    turned_on = [c for c in boxes if c["before"] == "enabled"]
    assert len(turned_on) == 3
    assert all(c["basic_smtp"] == {"before": "allowed", "after": "blocked"} for c in turned_on)
    user = next(c for c in plan["changes"] if c["kind"] == "user_assign")
    assert set(user) >= {"effective_before", "effective_after", "basic_smtp"}
    assert any(
        w.startswith('owner facilities@contoso.com: rule "devices" expires on 2027-01-10 (in 14')
        for w in plan["warnings"]
    )

    code, out, err = _apply(capsys)
    assert code == 0, out + err
    assert "mailbox SMTP AUTH settings hold" in out
    state = emu.dump_state()
    assert state["transport"]["SmtpClientAuthenticationDisabled"] is True
    after = _mailboxes(emu)
    assert all(v is False for u, v in after.items() if u.startswith("scanner-"))
    assert all(v is None for u, v in after.items() if not u.startswith("scanner-"))
    set_cas = [e for e in emu.write_log() if e.get("cmdlet") == "Set-CASMailbox"]
    assert len(set_cas) == len(boxes)  # exactly the plan's mailboxes, nothing more

    code, out, _ = run_cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0, out
    assert "No changes." in out

    # Export the converged tenant: the file declares all three switches and plans nothing.
    code, out, err = run_cli(capsys, "export", "--out", "exported.yaml")
    assert code == 0, err
    exported = Path("exported.yaml").read_text(encoding="utf-8")
    assert "smtp_auth:\n  organization: disabled\n" in exported
    assert "      smtp_auth: enabled\n" in exported
    code, out, _ = run_cli(capsys, "plan", "-c", "exported.yaml", "--detailed-exitcode")
    assert code == 0, out


def test_turning_org_smtp_auth_back_on_is_drift(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _apply(capsys)[0] == 0
    assert run_cli(capsys, "drift")[0] == 0
    # Somebody turns SMTP AUTH back on org-wide, and on one mailbox, by hand.
    other = open_tenant(argparse.Namespace())
    other.read_snapshot(SnapshotNeeds(smtp_org=True, mailboxes=True))
    other.set_smtp_org("enabled")
    code, out, _ = run_cli(capsys, "drift")
    assert code == 2
    assert "SMTP AUTH org-wide (Set-TransportConfig): enabled → disabled" in out
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    assert code == 0 and json.loads(out)["smtp_auth_disabled_org"] is False


def test_an_expired_exception_moves_its_users_and_a_saved_plan_cannot_revive_it(
    emu: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _apply(capsys)[0] == 0
    code, _, err = run_cli(capsys, "plan", "--out", "before.json")
    assert code == 0, err

    monkeypatch.setenv("AUTHPOLICY_TODAY", EXPIRED)
    code, out, _ = run_cli(capsys, "plan", "--format", "json", "--detailed-exitcode")
    assert code == 2
    plan = json.loads(out)
    expired = [w for w in plan["warnings"] if w.startswith('rule "devices"')]
    assert len(expired) == 1 and "expired on 2027-01-10" in expired[0]
    scanners = {u for u in _mailboxes(emu) if u.startswith("scanner-")}
    assert len(scanners) == 3
    assert 'its 3 users fall to the later rules (3 users to rule "everyone")' in expired[0]
    moved = {c["user"] for c in plan["changes"] if c["kind"] == "user_assign"}
    reset = {c["user"] for c in plan["changes"] if c["kind"] == "mailbox_smtp_change"}
    assert moved == reset == scanners
    assert all(
        c["basic_smtp"] == {"before": "allowed", "after": "blocked"}
        for c in plan["changes"]
        if c["kind"] == "mailbox_smtp_change"
    )

    # The plan saved before the expiry (no changes), its date edited: apply writes exactly
    # its changes (none) and names the ones the tenant needs now. Nothing is revived or lost.
    saved = json.loads(Path("before.json").read_text(encoding="utf-8"))
    saved["as_of"] = EXPIRED
    Path("edited.json").write_text(json.dumps(saved), encoding="utf-8")
    emu.reset_stats()
    code, out, err = _apply(capsys, "edited.json")
    assert code == 0, out + err
    assert "Not in the saved plan, so not written: 6 change(s)" in out
    assert emu.stats()["writes_changed_state"] == 0
    # The plan made on the day moves them.
    code, _, err = run_cli(capsys, "plan", "--out", "after.json")
    assert code == 0, err
    code, out, err = _apply(capsys, "after.json")
    assert code == 0, out + err
    assert all(v is None for u, v in _mailboxes(emu).items() if u.startswith("scanner-"))


def test_a_saved_plan_from_before_the_expiry_is_refused_on_the_day(
    emu: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reviewed while the exception held: the scanners' mailboxes keep SMTP AUTH.
    code, _, err = run_cli(capsys, "plan", "--out", "reviewed.json")
    assert code == 0, err
    monkeypatch.setenv("AUTHPOLICY_TODAY", EXPIRED)
    emu.reset_stats()
    code, _, err = _apply(capsys, "reviewed.json")
    assert code == 1
    assert "reviewed.json is stale, refusing to apply" in err
    assert f"the plan was made for {BEFORE_EXPIRY}; apply always plans for today, {EXPIRED}" in (
        err
    )
    assert emu.stats()["writes_changed_state"] == 0


def test_a_saved_plan_applies_on_a_busy_tenant_and_names_what_it_leaves(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "plan", "--out", "reviewed.json")
    assert code == 0, err
    reviewed = json.loads(Path("reviewed.json").read_text(encoding="utf-8"))
    joiners = emu.add_users(3)  # joined between review and apply: no direct policy
    code, out, err = _apply(capsys, "reviewed.json")
    assert code == 0, out + err
    assert "Not in the saved plan, so not written: 3 change(s) the tenant needs now" in out
    assert f"Apply complete: {len(reviewed['changes'])} applied" in out
    state = {u["UserPrincipalName"]: u for u in emu.dump_state()["users"]}
    assert all(not state[upn].get("_policy") for upn in joiners)
    code, out, _ = run_cli(capsys, "plan", "--format", "json", "--detailed-exitcode")
    assert code == 2
    assert {c["user"] for c in json.loads(out)["changes"]} == set(joiners)


def test_intents_a_killed_apply_left_are_read_back_and_recorded(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.apply.audit import AuditLog, intent_record
    from reconciler.apply.reconcile import unfinished_intents
    from reconciler.render import plan_from_json

    code, _, err = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 0, err
    plan = plan_from_json(Path("plan.json").read_text(encoding="utf-8"))
    org = next(c for c in plan.changes if c.kind == "smtp_org_change")
    box = next(c for c in plan.changes if c.kind == "mailbox_smtp_change")
    # A run that wrote both intents, sent the org switch (it landed) and was killed.
    with AuditLog(
        Path("audit.jsonl"), tenant=plan.tenant, fingerprint=plan.fingerprint,
        context={"run_id": "killed-run"},
    ) as log:  # fmt: skip
        log.intend([intent_record(org), intent_record(box)])
    other = open_tenant(argparse.Namespace())
    other.set_smtp_org("disabled")
    assert len(unfinished_intents(Path("audit.jsonl"))) == 2

    code, out, err = _apply(capsys)
    assert code == 0, out + err
    assert (
        "The audit log holds 2 write(s) of an earlier apply that stopped before recording their "
        "outcome; read back from the tenant: 1 not in effect, 1 took effect"
    ) in out
    records = [json.loads(line) for line in Path("audit.jsonl").read_text().splitlines()]
    reconciled = {r["key"]: r["result"] for r in records if r["record"] == "reconciled"}
    assert reconciled == {
        "smtp_org_change": "took_effect",
        f"mailbox:{box.user_id}": "not_in_effect",
    }
    assert unfinished_intents(Path("audit.jsonl")) == []
    outcome = next(r for r in records if r["record"] == "outcome")
    assert {"run_id", "client_id", "ci_run", "forced", "revoke_sessions"} <= set(outcome)
    assert outcome["client_id"] == emu.connection_env()["AZURE_CLIENT_ID"]
    assert outcome["revoke_sessions"] is True and outcome["run_id"] != "killed-run"
