"""Hostile data from the tenant and the file, through every output, end to end.

The tenant holds policies named with quotes, newlines, HTML, Markdown and a right-to-left
override, users with such display names and departments, and UPNs with unusual but legal
characters (' ! # ^ ~ _ -). policies.yaml declares a policy whose name has quotes and Markdown.
Every verb must keep its output intact (text: nothing invisible or moving; Markdown: nothing
that renders as HTML, links or mentions; JSON: exact), and apply must still converge.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.emulator.state import new_policy_record, user_dn
from reconciler.emulator.synthetic import generate_tenant
from reconciler.render import plan_from_json
from tests.reliability.harness import (
    plan_now,
    planned_keys,
    run_authpolicy,
    state_diff_keys,
    subprocess_env,
    upn_index,
    writes_outside_plan,
)

pytestmark = pytest.mark.integration

RLO = "\u202e"
HOSTILE_POLICIES = [
    'Evil "quoted" <script>alert(1)</script> | x',
    "Line one\n# Line two",
    f"{RLO}cilop lanigiro",
    "[click](https://evil.example) @admins **bold** `code`",
]
HOSTILE_DISPLAY = f"Mallory | <script>alert(2)</script>\nsecond line {RLO}321 \x1b[31mred"
HOSTILE_DEPARTMENT = "R&D | <Ops>\r\n=cmd|' /C calc'!A0"
ODD_UPNS = ["o'brien@contoso.com", "a!b#c^d~e_f@contoso.com", "-dash.first-@contoso.com"]
DECLARED = 'Printers "A" [docs](https://evil.example) <b>'

CONFIG = f"""\
version: 1
tenant: contoso.onmicrosoft.com
policies:
  Block Basic Auth:
    allow: []
  '{DECLARED}':
    allow: [smtp]
default_policy: Block Basic Auth
assignments:
  unmatched: ignore
  revoke_sessions: true
  rules:
    - name: odd
      policy: '{DECLARED}'
      match: {{users: ["{ODD_UPNS[0]}", "{ODD_UPNS[1]}"]}}
    - name: everyone
      policy: Block Basic Auth
      match: all
safety:
  max_user_changes: 100%
"""


def _hostile_state() -> dict[str, Any]:
    data = generate_tenant(
        200, 7, tenant_domain="contoso.onmicrosoft.com", user_domain="contoso.com"
    )
    policies = [new_policy_record(name, {"AllowBasicAuthPop": True}) for name in HOSTILE_POLICIES]
    data["policies"].extend(policies)
    # Mailboxes only: the plan leaves other recipient types alone (assignments.recipient_types).
    users = [u for u in data["users"] if u["RecipientTypeDetails"] == "UserMailbox"]
    for index, policy in enumerate(policies):
        users[10 + index]["_policy"] = policy["Guid"].lower()
    for user in users[20:30]:
        user["DisplayName"] = HOSTILE_DISPLAY
        user["Department"] = HOSTILE_DEPARTMENT
    for index, upn in enumerate(ODD_UPNS):
        user = users[40 + index]
        name = upn.split("@")[0]
        user.update(
            {
                "Name": name,
                "UserPrincipalName": upn,
                "WindowsEmailAddress": upn,
                "DisplayName": f"{name} | <i>odd</i>",
                "DistinguishedName": user_dn(name, "contoso.onmicrosoft.com"),
            }
        )
    return data


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    directory = tmp_path_factory.mktemp("hostile")
    state_file = directory / "tenant.json"
    state_file.write_text(json.dumps(_hostile_state()), encoding="utf-8")
    settings = EmulatorSettings(
        state_dir=directory, state_file=state_file, save_on_exit=False, fault_seed=1
    )
    with Emulator(settings) as emu:
        yield emu


def _invisible(text: str) -> list[str]:
    """Characters a terminal would act on or not show: controls (but newline) and bidi/format."""
    return sorted(
        {
            f"U+{ord(ch):04X}"
            for ch in text
            if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        }
    )


def _raw_hostile(text: str) -> list[str]:
    needles = ["<script", "<b>", "<i>", "](https://", "\x1b", RLO, "Line one\n"]
    needles += [f"\n{line}" for line in ("# Line two", "second line")]
    return [n for n in needles if n in text]


@pytest.fixture(scope="module")
def outputs(hostile: Emulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("runs")
    config = directory / "policies.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    env = subprocess_env(hostile.connection_env("writer"))
    results: dict[str, Any] = {"dir": directory, "config": config, "env": env}
    runs = {
        "validate": ["validate", "-c", str(config)],
        "plan-text": ["plan", "-c", str(config), "--out", str(directory / "plan.json")],
        "plan-markdown": ["plan", "-c", str(config), "--format", "markdown"],
        "plan-json": ["plan", "-c", str(config), "--format", "json"],
        "report-text": ["report"],
        "report-markdown": ["report", "--format", "markdown"],
        "report-csv": ["report", "--format", "csv"],
        "report-json": ["report", "--format", "json"],
        "export": ["export", "--out", str(directory / "exported.yaml")],
    }
    for name, argv in runs.items():
        results[name] = run_authpolicy(env, *argv, cwd=directory)
    return results


def test_every_verb_succeeds_on_hostile_data(outputs: dict[str, Any]) -> None:
    for name in ("validate", "plan-text", "plan-markdown", "plan-json", "report-text"):
        assert outputs[name].returncode == 0, (name, outputs[name].stderr[-1500:])
    for name in ("report-markdown", "report-csv", "report-json", "export"):
        assert outputs[name].returncode == 0, (name, outputs[name].stderr[-1500:])
        assert "Traceback" not in outputs[name].stderr


@pytest.mark.parametrize("name", ["plan-text", "report-text"])
def test_terminal_text_shows_nothing_invisible_and_no_raw_markup_line(
    outputs: dict[str, Any], name: str
) -> None:
    text = outputs[name].stdout + outputs[name].stderr
    assert _invisible(text) == []
    assert "\n# Line two" not in text and "\nsecond line" not in text
    assert RLO not in text and "\x1b" not in text


def test_the_hostile_names_are_in_the_plan_escaped(outputs: dict[str, Any]) -> None:
    text = outputs["plan-text"].stdout
    assert '"Line one\\x0a# Line two"' in text  # shown on one line, the newline as \x0a
    assert '"\\u202ecilop lanigiro"' in text  # the right-to-left override made visible
    assert '"Evil \\"quoted\\" <script>alert(1)</script> | x"' in text  # quotes escaped


def _outside_code(markdown: str) -> str:
    """The Markdown that renders as Markdown: fenced blocks and inline code spans removed
    (their content renders literally, whatever it holds)."""
    kept: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        stripped = line.lstrip()
        if fence is None:
            match = re.match(r"(`{3,}|~{3,})", stripped)
            if match:
                fence = match.group(1)
                continue
            kept.append(re.sub(r"(`+)(?:(?!\1).)+?\1", "", line))
        elif stripped.startswith(fence) and set(stripped) <= set(fence[0]):
            fence = None
    assert fence is None, "a code fence was left open: the rest of the comment is swallowed"
    return "\n".join(kept)


@pytest.mark.parametrize("name", ["plan-markdown", "report-markdown"])
def test_markdown_renders_no_html_links_or_mentions(outputs: dict[str, Any], name: str) -> None:
    text = outputs[name].stdout
    assert _invisible(text) == []
    rendered = _outside_code(text)
    assert _raw_hostile(rendered) == []
    assert re.search(r"(?<!\\)@admins", rendered) is None  # a mention would notify a team
    assert re.search(r"^#+ Line two", text, re.M) is None  # no heading smuggled in
    assert "Evil" in text and "cilop" in text  # shown, not dropped


def test_json_plan_round_trips_the_exact_names(outputs: dict[str, Any]) -> None:
    text = outputs["plan-json"].stdout
    assert _invisible(text) == []
    plan = plan_from_json(text)
    befores = {getattr(c, "before", None) for c in plan.changes}
    assert set(HOSTILE_POLICIES) <= befores
    assert json.loads(text)["changes"][0]["policy"] == DECLARED
    saved = (outputs["dir"] / "plan.json").read_text(encoding="utf-8")
    assert plan_from_json(saved).fingerprint == plan.fingerprint


def test_csv_report_keeps_one_row_per_user_and_neutralises_formulas(
    outputs: dict[str, Any],
) -> None:
    rows = list(csv.reader(io.StringIO(outputs["report-csv"].stdout)))
    header, body = rows[0], rows[1:]
    assert len(body) == 200
    assert all(len(row) == len(header) for row in body)
    cells = [cell for row in body for cell in row]
    assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in cells)
    upns = {cell for cell in cells if "@contoso.com" in cell}
    # A UPN that starts with "-" is written with a leading "'" so no spreadsheet runs it.
    assert {ODD_UPNS[0], ODD_UPNS[1], "'" + ODD_UPNS[2]} <= upns


def test_json_report_keeps_the_exact_values(outputs: dict[str, Any]) -> None:
    document = json.loads(outputs["report-json"].stdout)
    text = json.dumps(document, ensure_ascii=False)
    for upn in ODD_UPNS:
        assert upn in text


def test_export_writes_a_file_that_validates_and_leaves_out_what_it_cannot_declare(
    outputs: dict[str, Any],
) -> None:
    exported = outputs["dir"] / "exported.yaml"
    text = exported.read_text(encoding="utf-8")
    assert _invisible(text) == []
    result = run_authpolicy(outputs["env"], "validate", "-c", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr
    for upn in ODD_UPNS:
        assert upn in text


def test_apply_on_hostile_data_converges_with_only_planned_writes(
    hostile: Emulator, outputs: dict[str, Any]
) -> None:
    config: Path = outputs["config"]
    before = hostile.dump_state()
    plan = plan_now(hostile.connection_env("writer"), config)
    hostile.reset_stats()
    result = run_authpolicy(outputs["env"], "apply", "-c", str(config), "--auto-approve")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert _invisible(result.stdout + result.stderr) == []
    log = hostile.write_log()
    assert writes_outside_plan(plan, log, upn_index(hostile)) == []
    assert len(log) == len(plan.changes)
    assert state_diff_keys(before, hostile.dump_state()) == planned_keys(plan)
    assert plan_now(hostile.connection_env("writer"), config).changes == ()
    odd = {u["UserPrincipalName"]: u for u in hostile.dump_state()["users"]}
    declared = next(p for p in hostile.dump_state()["policies"] if p["Name"] == DECLARED)
    assert odd[ODD_UPNS[0]]["_policy"] == declared["Guid"].lower()
