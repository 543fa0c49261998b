"""`report --baseline` end to end over HTTPS against the emulator: every check passing and
failing on emulated tenants, not assessed (and why) when a permission or licence is missing,
--strict, the exit codes, SARIF validated against the OASIS 2.1.0 schema with fingerprints
that survive a line move, JUnit read back with junitparser, and a fleet's suites and runs.

Expected outcomes come from the emulator's raw state (by GUID), not from the checks' code."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import Failure, JUnitXml

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.model import SnapshotNeeds
from reconciler.tenant.connect import open_tenant
from tests.commands.emulated import ROOT_POLICIES, SWITCH_OF, connect, run_cli

pytestmark = pytest.mark.integration

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "sarif" / "sarif-schema-2.1.0.json").read_text(
        encoding="utf-8"
    )
)
ALL_IDS = [
    "MS.EXO.5.1v1",
    "CIS 6.5.1",
    "CIS 5.2.2.3",
    "AP.1",
    "AP.2",
    "AP.3",
    "AP.4",
    "AP.5",
]


def _emulator(tmp_path: Path, **settings: Any) -> Emulator:
    return Emulator(
        EmulatorSettings(
            users=300,
            seed=7,
            state_dir=tmp_path / "emu",
            apps={
                # Exchange and the sign-in log, but not Conditional Access.
                "nopolicyread": {
                    "roles": ["global_reader"],
                    "certificate": True,
                    "graph_roles": ["AuditLog.Read.All"],
                },
            },
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


def _baseline(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run_cli(capsys, "report", "--baseline", *extra, "--format", "json")
    return code, json.loads(out)


def _by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["checks"]}


def _converge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Apply the sample policies.yaml: the tenant then matches it."""
    path = tmp_path / "policies.yaml"
    shutil.copy(ROOT_POLICIES, path)
    code, out, err = run_cli(capsys, "apply", "--auto-approve", "--force", "--audit-log", "a.jsonl")
    assert code == 0, out + err
    return path


def _validate_sarif(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    validator = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    return doc


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_drifted_tenant_fails_what_its_raw_state_says_and_exits_2(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    state = emu.dump_state()
    by_guid = {p["Guid"]: p for p in state["policies"]}
    default = by_guid[state["organization"]["DefaultAuthenticationPolicy"]]
    default_allows = sorted(k for k, v in SWITCH_OF.items() if default.get(v))
    wide = sorted(
        p["Name"]
        for p in state["policies"]
        if p is not default and any(p.get(v) for k, v in SWITCH_OF.items() if k != "smtp")
    )
    assert default_allows and wide  # the emulator's story: a clicked default, a 2018 relic

    code, doc = _baseline(capsys)
    checks = _by_id(doc)
    assert code == 2
    assert list(checks) == ALL_IDS
    assert checks["MS.EXO.5.1v1"]["ids"] == ["MS.EXO.5.1v1", "CIS 6.5.4"]
    # Never set by an admin, and hidden (smtp_default_off=hidden): not assessed, with why.
    assert state["transport"]["SmtpClientAuthenticationDisabled"] is None
    assert checks["MS.EXO.5.1v1"]["status"] == "not_assessed"
    assert "SmtpClientAuthenticationDisabled" in checks["MS.EXO.5.1v1"]["reason"]
    assert checks["CIS 6.5.1"]["status"] == "pass"
    assert checks["CIS 5.2.2.3"]["status"] == "fail"  # conditional_access=none
    assert checks["AP.1"]["status"] == "fail"
    assert checks["AP.1"]["evidence"]["allows"] == [
        p for p in checks["AP.1"]["evidence"]["allows"] if p in default_allows
    ]
    assert sorted(checks["AP.1"]["evidence"]["allows"]) == default_allows
    assert checks["AP.3"]["status"] == "fail"
    assert sorted(f["group"] for f in checks["AP.3"]["findings"]) == [
        f"policy:{n.casefold()}" for n in wide
    ]
    # No policies.yaml: owners and expiry dates cannot be known.
    assert checks["AP.4"]["status"] == "not_assessed"
    assert "policies.yaml" in checks["AP.4"]["reason"]
    # Every user has a policy (direct or the default).
    assert checks["AP.2"]["status"] == "pass"
    assert checks["AP.2"]["evidence"]["users"] == len(state["users"])


def test_a_converged_tenant_passes_every_check_and_exits_0(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _converge(tmp_path, capsys)
    devices = [u["UserPrincipalName"] for u in emu.dump_state()["users"] if "scanner-" in u["Name"]]
    # Conditional Access blocks legacy auth for everyone but the devices' exception.
    emu.set_faults(conditional_access="block_legacy", conditional_access_exclude=devices)
    code, doc = _baseline(capsys)
    statuses = {c["id"]: c["status"] for c in doc["checks"]}
    assert statuses == dict.fromkeys(ALL_IDS, "pass"), doc
    assert code == 0
    checks = _by_id(doc)
    assert checks["CIS 5.2.2.3"]["evidence"]["excluded_users"] == len(devices)
    assert checks["AP.4"]["evidence"]["exception_rules"] == 1  # devices: owner and expiry
    assert checks["AP.5"]["evidence"]["exception_policies"] == 1  # the scanners send
    # --strict changes nothing when everything was assessed.
    assert run_cli(capsys, "report", "--baseline", "--strict")[0] == 0


def test_each_tenant_wide_check_fails_and_passes_with_the_setting(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _converge(tmp_path, capsys)
    tenant = open_tenant(argparse.Namespace())
    tenant.read_snapshot(SnapshotNeeds(smtp_org=True))
    tenant.set_smtp_org("enabled")
    emu.set_faults(oauth2_client_profile_enabled=False, conditional_access="report_only")
    code, doc = _baseline(capsys)
    checks = _by_id(doc)
    assert code == 2
    smtp = checks["MS.EXO.5.1v1"]
    assert smtp["status"] == "fail"
    assert smtp["findings"][0]["location"] == {
        "file": "policies.yaml",
        "line": _line_of(config, "organization: disabled"),
        "column": 3,
    }
    assert "organization: disabled" in smtp["fix"]
    assert checks["CIS 6.5.1"]["status"] == "fail"
    assert "OAuth2ClientProfileEnabled" in checks["CIS 6.5.1"]["fix"]
    ca = checks["CIS 5.2.2.3"]
    assert ca["status"] == "fail" and "report-only" in ca["summary"]
    # The CIS selection shows only CIS's checks, with CIS's id for the shared one.
    code, doc = _baseline(capsys, "cis")
    assert [c["id"] for c in doc["checks"]] == ["CIS 6.5.4", "CIS 6.5.1", "CIS 5.2.2.3"]
    # The other way round: Microsoft's default-off shown as the org flag passes.
    tenant.set_smtp_org("disabled")
    emu.set_faults(oauth2_client_profile_enabled=True, conditional_access="block_legacy")
    code, doc = _baseline(capsys, "cisa")
    assert (code, [c["status"] for c in doc["checks"]]) == (0, ["pass"])


def test_missing_permission_or_licence_is_not_assessed_and_strict_fails_it(
    tmp_path: Path,
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _converge(tmp_path, capsys)
    emu.set_faults(conditional_access="block_legacy")
    connect(monkeypatch, emu, app="nopolicyread")
    code, doc = _baseline(capsys, "cis")
    ca = _by_id(doc)["CIS 5.2.2.3"]
    assert ca["status"] == "not_assessed" and "Policy.Read.All" in ca["reason"]
    assert code == 0  # not assessed counts as passing...
    code, out, _ = run_cli(capsys, "report", "--baseline", "cis", "--strict", "--format", "junit")
    assert code == 2  # ...unless --strict
    xml = JUnitXml.fromstring(out)
    cases = {case.name: case for suite in xml for case in suite}
    assert isinstance(
        cases["CIS 5.2.2.3: Conditional Access blocks legacy authentication"].result[0], Failure
    )
    # Without the licence, the sign-in log (AP.5) and Conditional Access are both unknown.
    connect(monkeypatch, emu)
    emu.set_faults(graph_premium_licence=False)
    code, doc = _baseline(capsys)
    checks = _by_id(doc)
    assert checks["AP.5"]["status"] == "not_assessed" and "licence" in checks["AP.5"]["reason"]
    assert checks["CIS 5.2.2.3"]["status"] == "not_assessed"


def test_exception_checks_fail_at_the_rule_or_policy_line(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _converge(tmp_path, capsys)
    quiet = next(
        u["UserPrincipalName"]
        for u in emu.dump_state()["users"]
        if u["RecipientTypeDetails"] == "UserMailbox"
        and not u["Name"].startswith(("scanner-", "breakglass"))
    )
    # An exception for a person who never sends with Basic auth, with no owner and no expiry.
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        "  SMTP relay devices:\n",
        "  Forgotten exception:\n    allow: [smtp]\n  SMTP relay devices:\n",
    ).replace(
        "    - name: devices\n",
        f"    - name: forgotten\n      policy: Forgotten exception\n"
        f"      match: {{users: [{quiet}]}}\n    - name: devices\n",
    )
    config.write_text(text, encoding="utf-8")
    code, out, err = run_cli(capsys, "apply", "--auto-approve", "--force", "--audit-log", "a.jsonl")
    assert code == 0, out + err
    code, doc = _baseline(capsys, "authpolicy")
    checks = _by_id(doc)
    assert code == 2
    owned = checks["AP.4"]
    assert owned["status"] == "fail"
    assert [f["location"]["line"] for f in owned["findings"]] == [
        _line_of(config, "name: forgotten")
    ]
    assert "no owner and no expires" in owned["findings"][0]["message"]
    used = checks["AP.5"]
    assert used["status"] == "fail"
    assert [f["group"] for f in used["findings"]] == ["policy:forgotten exception"]
    assert used["findings"][0]["objects"] == [quiet]
    assert used["findings"][0]["location"]["line"] == _line_of(config, "Forgotten exception:")
    # --mask-users masks the named users in every format.
    code, out, _ = run_cli(capsys, "report", "--baseline", "--mask-users")
    assert quiet not in out and quiet[0] + "***@" in out


def test_sarif_validates_and_its_fingerprints_survive_a_line_move(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policies.yaml"
    shutil.copy(ROOT_POLICIES, config)
    code, out, _ = run_cli(capsys, "report", "--baseline", "--format", "sarif", "--strict")
    assert code == 2
    doc = _validate_sarif(out)
    (run,) = doc["runs"]
    assert run["automationDetails"]["id"] == "authpolicy/baseline/contoso.onmicrosoft.com/"
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == ALL_IDS
    results = run["results"]
    # Grouped per check and policy, never one per user; each located in policies.yaml.
    assert 0 < len(results) < 20
    for result in results:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        (location,) = result["locations"]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == "policies.yaml"
        assert location["physicalLocation"]["region"]["startLine"] >= 1
    before = {r["partialFingerprints"]["authpolicyFinding/v1"]: r for r in results}
    # Two comment lines on top move every finding down; the alerts are the same alerts.
    config.write_text("# moved\n# down\n" + config.read_text(encoding="utf-8"), encoding="utf-8")
    out = run_cli(capsys, "report", "--baseline", "--format", "sarif", "--strict")[1]
    after = {
        r["partialFingerprints"]["authpolicyFinding/v1"]: r
        for r in json.loads(out)["runs"][0]["results"]
    }
    assert set(after) == set(before)
    located = [
        k
        for k, r in before.items()
        if r["locations"][0]["physicalLocation"]["region"]["startLine"] > 1
    ]
    assert located
    for key in located:
        line = lambda r: r["locations"][0]["physicalLocation"]["region"]["startLine"]  # noqa: E731
        assert line(after[key]) == line(before[key]) + 2


def test_drift_speaks_sarif_and_junit_and_an_empty_run_closes_alerts(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policies.yaml"
    shutil.copy(ROOT_POLICIES, config)
    code, out, _ = run_cli(capsys, "drift", "--format", "sarif")
    assert code == 2
    doc = _validate_sarif(out)
    results = doc["runs"][0]["results"]
    rules = {r["ruleId"] for r in results}
    assert {"AP.DRIFT.POLICY", "AP.DRIFT.ASSIGNMENT", "AP.DRIFT.SMTP_ORG"} <= rules
    removal = next(r for r in results if "Legacy 2018 Policy" in r["message"]["text"])
    assert removal["locations"][0]["physicalLocation"]["region"]["startLine"] == _line_of(
        config, "remove_policies:"
    )
    # Users are grouped per rule and target: fewer results than users that change.
    plan = json.loads(run_cli(capsys, "plan", "--format", "json")[1])
    users = [c for c in plan["changes"] if c["kind"] in ("user_assign", "user_clear")]
    assignment = [r for r in results if r["ruleId"] == "AP.DRIFT.ASSIGNMENT"]
    assert len(assignment) < len(users)
    code, out, _ = run_cli(capsys, "drift", "--format", "junit")
    xml = JUnitXml.fromstring(out)
    assert code == 2 and sum(suite.failures for suite in xml) >= 3
    _converge(tmp_path, capsys)
    code, out, _ = run_cli(capsys, "drift", "--format", "sarif", "--quiet-when-no-changes")
    assert code == 0
    assert _validate_sarif(out)["runs"][0]["results"] == []
    code, out, _ = run_cli(capsys, "drift", "--format", "junit")
    xml = JUnitXml.fromstring(out)
    assert code == 0 and sum(suite.failures for suite in xml) == 0
    assert sum(suite.tests for suite in xml) == 5


def test_plan_warns_when_conditional_access_defeats_an_smtp_exception(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _converge(tmp_path, capsys)
    devices = sorted(
        u["UserPrincipalName"] for u in emu.dump_state()["users"] if "scanner-" in u["Name"]
    )
    emu.set_faults(conditional_access="block_smtp_only", conditional_access_exclude=devices[:1])
    plan = json.loads(run_cli(capsys, "plan", "--format", "json")[1])
    (warning,) = [w for w in plan["warnings"] if "Conditional Access" in w]
    assert '"devices"' in warning and "Block legacy authentication" in warning
    assert f"{len(devices) - 1} users" in warning
    assert devices[0] not in warning and all(d in warning for d in devices[1:4])
    emu.set_faults(conditional_access_exclude=devices)
    plan = json.loads(run_cli(capsys, "plan", "--format", "json")[1])
    assert not [w for w in plan["warnings"] if "Conditional Access" in w]


def test_bad_flag_combinations_end_in_one_line_and_exit_1(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, words in (
        (("report", "--format", "sarif"), "--baseline"),
        (("report", "--strict"), "--baseline"),
        (("report", "--baseline", "--format", "csv"), "csv"),
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and out == ""
        assert len(err.strip().splitlines()) == 1 and words in err
        assert "Traceback" not in err


def test_doctor_names_policy_read_all(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 0 and "Policy.Read.All" in out
    connect(monkeypatch, emu, app="nopolicyread")
    code, out, _ = run_cli(capsys, "doctor")
    line = next(x for x in out.splitlines() if "Conditional Access" in x)
    assert "grant the app Policy.Read.All" in line and code == 0


def test_no_default_fails_ap1_and_leaves_users_without_a_policy_for_ap2(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = open_tenant(argparse.Namespace())
    tenant.read_snapshot(SnapshotNeeds(users=False))
    tenant.set_default_policy(None)  # somebody clears the default in the admin center
    state = emu.dump_state()
    bare = sorted(u["UserPrincipalName"] for u in state["users"] if not u.get("_policy"))
    assert bare and state["organization"].get("DefaultAuthenticationPolicy") is None
    code, doc = _baseline(capsys, "authpolicy")
    checks = _by_id(doc)
    assert code == 2
    assert checks["AP.1"]["status"] == "fail" and "no default" in checks["AP.1"]["summary"]
    covered = checks["AP.2"]
    assert covered["status"] == "fail"
    assert covered["evidence"]["no_policy"] == len(bare)
    (finding,) = covered["findings"]
    assert finding["count"] == len(bare)
    assert finding["objects"] == sorted(bare, key=lambda u: (u.casefold(), u))[:5]
