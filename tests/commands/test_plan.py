"""`authpolicy plan`: exit codes, --out (first, 0600, even when guarded), formats, colour.

Unit tests stub the pipeline (config + tenant) with the model scenarios; the integration
tests run the real CLI against the emulator over HTTPS."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from reconciler.commands import plan as plan_command
from reconciler.model import Plan
from reconciler.plan.pipeline import PlanRun
from reconciler.render import plan_from_json
from tests.commands.emulated import ROOT_POLICIES, connect, emulator, run_cli
from tests.render.scenarios import contoso_plan, no_changes_plan


def stub(monkeypatch: pytest.MonkeyPatch, plan: Plan, seen: list | None = None) -> None:
    def fake_plan_from_args(args, environ=os.environ, progress=None):
        if seen is not None:
            seen.append(args)
        return PlanRun(None, SimpleNamespace(name=plan.tenant), None, plan)  # type: ignore[arg-type]

    monkeypatch.setattr(plan_command, "plan_from_args", fake_plan_from_args)


def unguarded(plan: Plan) -> Plan:
    return dataclasses.replace(plan, guards=())


@pytest.mark.parametrize(
    ("plan", "flags", "code"),
    [
        (no_changes_plan(), [], 0),
        (no_changes_plan(), ["--detailed-exitcode"], 0),
        (unguarded(contoso_plan()), [], 0),
        (unguarded(contoso_plan()), ["--detailed-exitcode"], 2),
        (contoso_plan(), [], 0),
        (contoso_plan(), ["--detailed-exitcode"], 3),
    ],
)
def test_exit_codes(monkeypatch, capsys, plan, flags, code) -> None:
    stub(monkeypatch, plan)
    assert run_cli(capsys, "plan", *flags)[0] == code


def test_out_is_written_owner_only_even_when_guarded(monkeypatch, capsys, tmp_path: Path) -> None:
    plan = contoso_plan()
    assert plan.blocked
    stub(monkeypatch, plan)
    out = tmp_path / "PLAN.json"
    out.write_text("old, world-readable")
    out.chmod(0o644)
    code, stdout, stderr = run_cli(capsys, "plan", "--out", str(out), "--detailed-exitcode")
    assert code == 3
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert plan_from_json(out.read_text(encoding="utf-8")) == plan
    assert stderr == f"Saved the plan to {out} ({plan.fingerprint})\n"
    assert "Blocked: apply refuses this plan without --force" in stdout
    assert [p.name for p in tmp_path.iterdir()] == ["PLAN.json"]  # no temporary left behind


def test_out_into_a_missing_directory_is_a_one_line_error(monkeypatch, capsys, tmp_path) -> None:
    stub(monkeypatch, contoso_plan())
    code, stdout, stderr = run_cli(capsys, "plan", "--out", str(tmp_path / "nope" / "PLAN.json"))
    assert code == 1
    target = tmp_path / "nope" / "PLAN.json"
    assert stderr == f"error: cannot write the plan to {target}: No such file or directory\n"
    assert stdout == ""


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_formats_go_to_stdout(monkeypatch, capsys, fmt: str) -> None:
    plan = contoso_plan()
    stub(monkeypatch, plan)
    code, stdout, _ = run_cli(capsys, "plan", "--format", fmt)
    assert code == 0
    if fmt == "json":
        assert plan_from_json(stdout) == plan
    elif fmt == "markdown":
        assert stdout.startswith("<!-- authpolicy:plan -->\n")
    else:
        assert stdout.startswith('authpolicy plan for tenant "contoso.onmicrosoft.com"\n')


def test_show_users_and_mask_users(monkeypatch, capsys) -> None:
    stub(monkeypatch, contoso_plan())
    _, stdout, _ = run_cli(capsys, "plan", "--show-users", "0", "--mask-users")
    assert "@contoso.com" not in stdout.replace("@contoso.com\n", "")  # nothing listed
    _, stdout, _ = run_cli(capsys, "plan", "--show-users", "all", "--mask-users")
    assert "a***@contoso.com" in stdout and "ann@" not in stdout


def test_bad_flags_are_one_line_errors(monkeypatch, capsys) -> None:
    stub(monkeypatch, contoso_plan())
    code, _, stderr = run_cli(capsys, "plan", "--format", "json", "--mask-users")
    assert code == 1
    assert stderr == (
        "error: --mask-users applies to text and markdown; the JSON plan is the plan apply "
        "executes and is never masked\n"
    )
    code, _, stderr = run_cli(capsys, "plan", "--show-users", "many")
    assert code == 1
    assert "argument --show-users: expected a number or 'all', got 'many'" in stderr


class FakeTTY:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("fmt", "no_color", "environ", "tty", "expected"),
    [
        ("text", False, {}, True, True),
        ("text", False, {}, False, False),
        ("text", True, {}, True, False),
        ("text", False, {"NO_COLOR": "1"}, True, False),
        ("text", False, {"NO_COLOR": ""}, True, True),  # NO_COLOR counts only when non-empty
        ("markdown", False, {}, True, False),
    ],
)
def test_colour_only_for_text_on_a_terminal(fmt, no_color, environ, tty, expected) -> None:
    from reconciler.render.options import use_color

    args = SimpleNamespace(format=fmt, no_color=no_color)
    assert use_color(args, FakeTTY(tty), environ) is expected  # type: ignore[arg-type]


# --------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_plan_against_the_emulator(monkeypatch, capsys, tmp_path: Path) -> None:
    with emulator(tmp_path, users=300) as emu:
        connect(monkeypatch, emu, app="reader")
        out = tmp_path / "PLAN.json"
        code, stdout, _ = run_cli(
            capsys, "plan", "-c", str(ROOT_POLICIES), "--out", str(out), "--detailed-exitcode"
        )
        assert code == 2
        saved = json.loads(out.read_text(encoding="utf-8"))
        # the synthetic tenant's drift: an admin-center edit of the default policy, and the
        # unused legacy policy the file removes
        update = next(c for c in saved["changes"] if c["kind"] == "policy_update")
        assert update["policy"] == "Block Basic Auth"
        assert update["fields"] == {
            "imap": {"before": True, "after": False},
            "smtp": {"before": True, "after": False},
        }
        assert saved["changes"][-1] == {"kind": "policy_delete", "policy": "Legacy 2018 Policy"}
        assert '~ update policy "Block Basic Auth"' in stdout
        # the same tenant and file plan to the same bytes
        again = tmp_path / "AGAIN.json"
        run_cli(capsys, "plan", "-c", str(ROOT_POLICIES), "--out", str(again))
        assert again.read_bytes() == out.read_bytes()


def test_out_never_replaces_a_device_or_follows_a_link(monkeypatch, capsys, tmp_path: Path) -> None:
    stub(monkeypatch, contoso_plan())
    code, _, err = run_cli(capsys, "plan", "--out", "/dev/full")
    assert (code, err.strip()) == (
        1,
        "error: refusing to write the plan to /dev/full: it is not a regular file; name a "
        "regular file",
    )
    assert Path("/dev/full").is_char_device()
    victim = tmp_path / "victim"
    victim.write_text("keep", encoding="utf-8")
    link = tmp_path / "plan.json"
    link.symlink_to(victim)
    code, _, err = run_cli(capsys, "plan", "--out", str(link))
    assert code == 1
    assert err.strip() == (
        f"error: refusing to write the plan to {link}: it is a symbolic link; name a regular file"
    )
    assert victim.read_text(encoding="utf-8") == "keep"
