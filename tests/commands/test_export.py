"""`authpolicy export` end to end against the emulator: export, then plan = no changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.commands.emulated import ROOT_POLICIES, connect, emulator, run_cli

pytestmark = pytest.mark.integration


def _export_then_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[str, str]:
    out = tmp_path / "exported.yaml"
    code, _, err = run_cli(capsys, "export", "--out", str(out))
    assert code == 0, err
    code, plan_out, plan_err = run_cli(
        capsys, "plan", "-c", str(out), "--detailed-exitcode", "--format", "json"
    )
    assert code == 0, plan_out + plan_err
    assert '"total": 0' in plan_out
    # The $schema header resolves: the schema was written beside the exported file.
    assert (tmp_path / "policies.schema.json").read_text(encoding="utf-8").startswith("{")
    return out.read_text(encoding="utf-8"), err


@pytest.mark.parametrize(("users", "seed"), [(300, 7), (120, 11), (40, 2026)])
def test_export_then_plan_has_no_changes_on_synthetic_tenants(
    users: int,
    seed: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with emulator(tmp_path, users=users, seed=seed) as emu:
        connect(monkeypatch, emu, app="reader")  # export only reads
        state = emu.dump_state()
        text, err = _export_then_plan(capsys, tmp_path)
    without = sum(1 for u in state["users"] if not u.get("_policy"))
    assert f"# Found: 3 policies, {users:,} users." in text
    assert f"#   {without:,} users rely on the default (Block Basic Auth)" in text
    assert f"Exported 3 policies, {users - without:,} users with a direct policy and " in err
    doc = yaml.safe_load(text)
    # The drifted default is declared as it is (imap and smtp on), not as the repo wants it.
    assert doc["policies"]["Block Basic Auth"] == {"allow": ["imap", "smtp"]}
    listed = sum(len(r["match"]["users"]) for r in doc["assignments"]["rules"])
    assert listed == users - without


def test_export_after_applying_the_root_file_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The root policies.yaml assigns through a nested group (`except: member_of`) and leaves
    # users on the default; the export must reproduce that state with plain UPN lists.
    config = tmp_path / "policies.yaml"
    shutil.copy(ROOT_POLICIES, config)
    with emulator(tmp_path, users=200, seed=7) as emu:
        connect(monkeypatch, emu)
        code, out, err = run_cli(
            capsys,
            "apply", "-c", str(config), "--auto-approve", "--force",
            "--audit-log", str(tmp_path / "audit.jsonl"),
        )  # fmt: skip
        assert code == 0, out + err
        text, _ = _export_then_plan(capsys, tmp_path)
        # apply accepts the exported `tenant:` (the initial domain) and has nothing to do.
        code, out, err = run_cli(
            capsys, "apply", "-c", str(tmp_path / "exported.yaml"), "--auto-approve",
            "--audit-log", str(tmp_path / "audit2.jsonl"),
        )  # fmt: skip
        assert code == 0, out + err
        assert "No changes. The tenant matches the desired state." in out
    doc = yaml.safe_load(text)
    assert doc["tenant"] == "contoso.onmicrosoft.com"
    assert "Legacy 2018 Policy" not in doc["policies"]
    assert doc["policies"]["Block Basic Auth"] == {"allow": []}
    rules = {r["policy"]: r["match"]["users"] for r in doc["assignments"]["rules"]}
    # Users holding the default policy directly stay listed (they hold it, not inherit it).
    assert "Block Basic Auth" in rules and "breakglass@contoso.com" not in rules["Block Basic Auth"]


def test_export_is_byte_identical_twice_and_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with emulator(tmp_path, users=60) as emu:
        connect(monkeypatch, emu, app="reader")
        code, first, _ = run_cli(capsys, "export")
        assert code == 0
        code, second, _ = run_cli(capsys, "export")
    assert first == second
    assert first.startswith("# yaml-language-server: $schema=policies.schema.json\n")


def test_export_refuses_to_overwrite_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "policies.yaml"
    target.write_text("# hand-written\n", encoding="utf-8")
    with emulator(tmp_path, users=20) as emu:
        connect(monkeypatch, emu, app="reader")
        code, out, err = run_cli(capsys, "export", "--out", str(target))
        assert (code, out) == (1, "")
        assert err == f"error: {target} already exists; use --force to overwrite it\n"
        assert target.read_text(encoding="utf-8") == "# hand-written\n"
        code, _, err = run_cli(capsys, "export", "--out", str(target), "--force")
    assert code == 0, err
    assert target.read_text(encoding="utf-8").startswith("# yaml-language-server")


def test_export_without_a_connection_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AUTHPOLICY_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    code, out, err = run_cli(capsys, "export")
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and err.count("\n") == 1


def test_dangling_links_left_by_a_removed_policy_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An emulator that, like some Exchange builds may, lets a held policy be removed and
    # leaves the users' links dangling (docs/emulator.md, remove_referenced=orphan).
    from reconciler.cli import build_parser
    from reconciler.emulator import Emulator, EmulatorSettings
    from reconciler.tenant.connect import open_tenant

    settings = EmulatorSettings(
        users=100, seed=7, state_dir=tmp_path / "emu", remove_referenced="orphan"
    )
    with Emulator(settings) as emu:
        connect(monkeypatch, emu)
        holders = {
            u["UserPrincipalName"]
            for u in emu.dump_state()["users"]
            if u.get("_policy")
            == next(
                p["Guid"] for p in emu.dump_state()["policies"] if p["Name"] == "SMTP relay devices"
            )
        }
        open_tenant(build_parser().parse_args(["report"])).remove_policy("SMTP relay devices")
        text, err = _export_then_plan(capsys, tmp_path)
        code, out, _ = run_cli(capsys, "report", "--format", "json")
    assert holders and code == 0
    assert f"{len(holders)} item(s) could not be written and are left as they are" in err
    for upn in holders:
        assert f"#   {upn}: holds policy " in text
        assert "(dangling link); left as is" in text
    assert "SMTP relay devices" not in yaml.safe_load(text)["policies"]
    assert json.loads(out)["summary"]["policy_not_found"] == len(holders)
