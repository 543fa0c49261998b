"""`authpolicy demo` end to end: the real commands against the embedded emulator."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.commands.emulated import ROOT, run_cli


@pytest.mark.integration
def test_demo_plans_applies_converges_and_reports(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)  # `make demo` runs from the repository root
    # A real tenant configured in the caller's shell must be neither used nor lost.
    monkeypatch.setenv("AZURE_TENANT_ID", "real-tenant.onmicrosoft.com")
    monkeypatch.setenv("AZURE_CLIENT_CERTIFICATE_PATH", str(tmp_path / "real.pem"))
    monkeypatch.delenv("AUTHPOLICY_ENDPOINT", raising=False)
    before = dict(os.environ)

    code, out, err = run_cli(capsys, "demo")

    assert code == 0, out + err
    assert dict(os.environ) == before
    steps = re.findall(r"^\$ authpolicy (.*)$", out, flags=re.M)
    assert [s.split(" --audit-log")[0] for s in steps] == [
        "plan",
        "apply --auto-approve",
        "plan",
        "apply --auto-approve",
        "plan --detailed-exitcode",
        "report",
        "report --baseline",
    ]
    # The story is read from the tenant, not written in advance.
    assert '  - the default policy "Block Basic Auth" allows Basic auth for imap, smtp\n' in out
    assert '  - "Legacy 2018 Policy" is held by nobody and allows 6 of the 12 protocols\n' in out
    assert "  - 226 users have no direct policy of their own\n" in out
    first_plan, rest = out.split("$ authpolicy apply", 1)
    # Evidence: the plan would cut off the IMAP users, and the guard refuses the apply.
    assert "imap by 3 users (last " in first_plan
    assert "3 active users blocked." in first_plan
    blocked, rest = rest.split("$ authpolicy plan\n", 1)
    assert "Blocked: apply refuses this plan without --force" in blocked
    assert "error: 1 safety guard(s) block this apply" in err
    assert "- name: imap-migration" in blocked  # the fixed file, shown
    assert "0 active users blocked." in rest
    assert '~ update policy "Block Basic Auth"' in first_plan
    assert '- delete policy "Legacy 2018 Policy"' in first_plan
    assert "96 user changes (95 assign, 1 clear)" in first_plan
    assert "99 user changes (98 assign, 1 clear)" in rest
    # The whole SMTP AUTH story: the org switch off, the scanners' exception kept (with its
    # owner warned two weeks ahead), everybody else reset to follow the org.
    assert "SMTP AUTH org-wide (Set-TransportConfig): unknown (not shown) → disabled" in first_plan
    assert "31 mailbox SMTP AUTH changes" in first_plan
    assert "3 users: SMTP AUTH enabled → organization" in first_plan
    assert "Basic SMTP allowed → blocked" in first_plan
    assert 'owner facilities@contoso.com: rule "devices" expires on 2027-01-10 (in 14 days' in (
        first_plan
    )
    assert "Apply complete: 134 applied, 0 failed, 0 skipped, 0 not found" in rest
    second_plan = rest.split("$ authpolicy plan --detailed-exitcode", 1)[1]
    assert "No changes. The tenant matches the desired state." in second_plan
    report = rest.split("$ authpolicy report", 1)[1]
    assert "Basic-auth exposure report: contoso.onmicrosoft.com" in report
    assert "  2,000  users\n" in report
    assert "      0  have no authentication policy at all" in report
    assert re.search(r"Done in \d+\.\d s: planned, applied, verified, reported, checked", out)
    assert "pass  MS.EXO.5.1v1, CIS 6.5.4: SMTP AUTH is disabled" in out  # apply set it
    assert "FAIL  CIS 5.2.2.3" in out  # no Conditional Access block: outside the file


@pytest.mark.integration
def test_demo_stops_with_exit_1_when_the_file_is_invalid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "policies.yaml"
    bad.write_text("version: 2\npolicies: {}\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "demo", "-c", str(bad), "--users", "20")
    assert code == 1
    assert "The plan failed (exit 1); the demo stops here." in out
    assert "unsupported version" in err


def test_demo_says_so_when_the_emulator_cannot_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.emulator import Emulator

    def refuse(self: Emulator) -> Emulator:
        raise OSError(98, "Address already in use")

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(Emulator, "start", refuse)
    code, _, err = run_cli(capsys, "demo")
    assert code == 1
    assert err == "error: cannot start the emulated tenant: [Errno 98] Address already in use\n"
