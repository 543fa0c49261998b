"""`authpolicy report` against the emulator: its figures match the emulator's own state."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.commands.emulated import ROOT_POLICIES, connect, emulator, expected_exposure, run_cli

pytestmark = pytest.mark.integration


def _check_against_state(data: dict, state: dict) -> None:  # type: ignore[type-arg]
    expected = expected_exposure(state)
    summary = data["summary"]
    assert summary["users"] == len(state["users"])
    assert (summary["direct_policy"], summary["via_default"], summary["no_policy"]) == (
        expected["direct"],
        expected["default"],
        expected["none"],
    )
    exposed = {u["upn"] for u in data["users"] if u["smtp_basic_auth_possible"]}
    assert exposed == expected["exposed"]
    assert summary["smtp_basic_auth_possible"] == len(expected["exposed"])
    assert summary["protected"] == len(state["users"]) - len(expected["exposed"])
    assert summary["smtp_policy_allows_but_smtp_auth_off"] == expected["latent"]


def test_report_figures_match_the_emulator_state_before_and_after_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policies.yaml"
    shutil.copy(ROOT_POLICIES, config)
    with emulator(tmp_path, users=300, seed=7) as emu:
        connect(monkeypatch, emu, app="reader")
        code, out, err = run_cli(capsys, "report", "--format", "json")
        assert code == 0, err
        before = json.loads(out)
        _check_against_state(before, emu.dump_state())
        # The drifted tenant: the default allows Basic SMTP, and the org switch shows no value
        # (Microsoft's default-off, smtp_default_off=hidden): the report says unknown for
        # everyone who follows the org, and counts them as exposed rather than guess.
        assert before["smtp_auth_disabled_org"] is None
        unknown = {x["upn"] for x in before["users"] if x["basic_smtp"] == "unknown"}
        assert unknown == expected_exposure(emu.dump_state())["unknown"] and len(unknown) > 150
        allowed = [x["upn"] for x in before["users"] if x["basic_smtp"] == "allowed"]
        # Known to work: the scanners and the 3 relay-policy users who turned SMTP AUTH on.
        assert sum(not u.startswith("scanner-") for u in allowed) == 3

        connect(monkeypatch, emu)
        code, out, err = run_cli(
            capsys, "apply", "-c", str(config), "--auto-approve", "--force",
            "--audit-log", str(tmp_path / "audit.jsonl"),
        )  # fmt: skip
        assert code == 0, out + err
        connect(monkeypatch, emu, app="reader")
        code, out, _ = run_cli(capsys, "report", "--format", "json")
        after = json.loads(out)
        _check_against_state(after, emu.dump_state())
    policies = {p["name"]: p for p in after["policies"]}
    assert "Legacy 2018 Policy" not in policies
    assert policies["Block Basic Auth"]["allowed"] == []
    assert policies["Block Basic Auth"]["smtp_basic_auth_possible_users"] == 0
    # After apply only SMTP relay devices holders whose mailbox enables SMTP AUTH remain.
    exposed = [u for u in after["users"] if u["smtp_basic_auth_possible"]]
    assert exposed and {u["effective_policy"] for u in exposed} == {"SMTP relay devices"}


def test_text_csv_and_markdown_agree_with_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with emulator(tmp_path, users=150, seed=3) as emu:
        connect(monkeypatch, emu, app="reader")
        outputs = {}
        for fmt in ("json", "text", "csv", "markdown"):
            code, out, err = run_cli(capsys, "report", "--format", fmt, "--show-users", "all")
            assert code == 0, err
            outputs[fmt] = out
    data = json.loads(outputs["json"])
    s = data["summary"]
    width = len(f"{s['users']:,}")
    assert f"  {s['users']:>{width},}  users\n" in outputs["text"]
    assert (
        f"  {s['smtp_basic_auth_possible']:>{width},}  can still use Basic SMTP AUTH"
        in outputs["text"]
    )
    for user in data["users"]:
        if user["smtp_basic_auth_possible"]:
            assert f"  {user['upn']}  " in outputs["text"]
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert len(rows) == s["users"]
    assert (
        sum(r["smtp_basic_auth_possible"] == "true" for r in rows) == s["smtp_basic_auth_possible"]
    )
    assert {r["via"] for r in rows} <= {"direct", "default", "none"}
    assert (
        f"| **Can still use Basic SMTP AUTH** | **{s['smtp_basic_auth_possible']:,}** |"
        in (outputs["markdown"])
    )


def test_report_warns_when_the_config_names_another_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policies.yaml"
    config.write_text(
        ROOT_POLICIES.read_text(encoding="utf-8").replace(
            "tenant: contoso.onmicrosoft.com", "tenant: fabrikam.onmicrosoft.com"
        ),
        encoding="utf-8",
    )
    with emulator(tmp_path, users=20) as emu:
        connect(monkeypatch, emu, app="reader")
        code, out, err = run_cli(capsys, "report", "-c", str(config))
    assert code == 0
    assert out.startswith("Basic-auth exposure report: ")
    assert 'warning: policies.yaml names tenant "fabrikam.onmicrosoft.com"' in err


def test_report_rejects_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "report", "--format", "xml")
    assert (code, out) == (1, "")
    assert "invalid choice: 'xml'" in err


@pytest.mark.integration
def test_mask_users_keeps_upns_out_of_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with emulator(tmp_path, users=40) as emu:
        connect(monkeypatch, emu, app="reader")
        upns = [u["UserPrincipalName"] for u in emu.dump_state()["users"]]
        code, out, err = run_cli(capsys, "report", "--mask-users", "--show-users", "all")
    assert code == 0, err
    assert "***@contoso.com" in out
    assert not [upn for upn in upns if upn in out]
