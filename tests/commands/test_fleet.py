"""Many tenants end to end over HTTPS: five emulated tenants with overlays, one where the app
was never consented, one whose overlay guard blocks its apply; the combined plan, the exit
codes, per-tenant apply from the saved plans, and an empty re-plan for the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from tests.commands.emulated import ROOT_POLICIES, connect, run_cli

pytestmark = pytest.mark.integration

OVERLAYS = {
    "fabrikam": "version: 1\nsafety:\n  max_user_changes: 1\n",  # its guard blocks apply
    "northwind": (
        "version: 1\n"
        "policies:\n  Front desk: {allow: [smtp]}\n"
        "assignments:\n  rules:\n"
        "    - name: front-desk\n      before: everyone\n      policy: Front desk\n"
        "      match: {department: [Facilities]}\n"
    ),
    "tailspin": (
        "version: 1\nassignments:\n  rules:\n"
        "    - name: devices\n      policy: SMTP relay devices\n      smtp_auth: enabled\n"
        "      match: {upn: ['scanner-*@tailspin.com']}\n"
    ),
}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Emulator, Path]]:
    settings = EmulatorSettings(
        users=300, seed=7, state_dir=tmp_path / "emu", tenants=5, tenants_without_consent=(5,)
    )
    with Emulator(settings) as emu:
        connect(monkeypatch, emu)
        monkeypatch.setenv("AUTHPOLICY_TODAY", "2026-12-27")
        monkeypatch.chdir(tmp_path)
        # The other tenants drifted more than Contoso: the shared guard is looser.
        base = (
            ROOT_POLICIES.read_text(encoding="utf-8")
            .replace("tenant: contoso.onmicrosoft.com\n", "")
            .replace("max_user_changes: 10%", "max_user_changes: 50%")
        )
        (tmp_path / "base.yaml").write_text(base, encoding="utf-8")
        (tmp_path / "overlays").mkdir()
        lines = ["version: 1", "base: base.yaml", "tenants:"]
        for position, name in enumerate(
            ("contoso", "fabrikam", "northwind", "tailspin", "adatum"), start=1
        ):
            lines.append(f"  {name}:")
            lines.append(f"    tenant: {emu.tenant(position).state.domain}")
            lines.append(f"    groups: [{'pilot' if position <= 2 else 'wave2'}]")
            if name in OVERLAYS:
                (tmp_path / "overlays" / f"{name}.yaml").write_text(OVERLAYS[name], "utf-8")
                lines.append(f"    overlay: overlays/{name}.yaml")
        (tmp_path / "tenants.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield emu, tmp_path


def _rows(out: str) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(out)["tenants"]}


def test_combined_plan_per_tenant_apply_and_an_empty_replan(
    fleet: tuple[Emulator, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    emu, folder = fleet
    code, out, err = run_cli(
        capsys,
        "plan",
        "--tenants",
        "tenants.yaml",
        "--out-dir",
        "out",
        "--format",
        "json",
        "--detailed-exitcode",
    )
    rows = _rows(out)
    assert code == 1, err  # the worst tenant: adatum, where the app has no consent
    assert {n: r["exit_code"] for n, r in rows.items()} == {
        "contoso": 2,
        "fabrikam": 3,
        "northwind": 2,
        "tailspin": 2,
        "adatum": 1,
    }
    assert "AADSTS700016" in rows["adatum"]["error"]
    assert rows["fabrikam"]["guards"] == ["max_user_changes"]
    for name in ("contoso", "fabrikam", "northwind", "tailspin"):
        plan = json.loads((folder / "out" / name / "plan.json").read_text(encoding="utf-8"))
        assert plan["tenant"] == emu.tenant(list(rows).index(name) + 1).state.domain
        assert rows[name]["changes"] == len(plan["changes"])
    # Each tenant's own file: the overlay merged, the inventory's tenant written in.
    merged = (folder / "out" / "northwind" / "policies.yaml").read_text(encoding="utf-8")
    assert "tenant: northwind.onmicrosoft.com" in merged and "Front desk" in merged
    northwind = json.loads((folder / "out" / "northwind" / "plan.json").read_text("utf-8"))
    assert any(
        c["kind"] == "policy_create" and c["policy"] == "Front desk" for c in northwind["changes"]
    )
    markdown = (folder / "out" / "fleet-plan.md").read_text(encoding="utf-8")
    assert markdown.startswith("<!-- authpolicy:fleet-plan -->")
    assert len(markdown) < 65_536
    for name in ("contoso", "fabrikam", "northwind", "tailspin", "adatum"):
        assert f"<summary>{name}: " in markdown  # a collapsible section per tenant

    code, out, err = run_cli(
        capsys, "apply", "--tenants", "tenants.yaml", "--plans", "out", "--auto-approve"
    )
    assert code == 1, out + err
    assert "fabrikam   exit 3" in out and "adatum     exit 1" in out
    written = {
        name: emu.tenant(k).stats_dict()["writes_changed_state"]
        for k, name in enumerate(
            ("contoso", "fabrikam", "northwind", "tailspin", "adatum"), start=1
        )
    }
    assert written["fabrikam"] == written["adatum"] == 0
    assert all(written[n] > 0 for n in ("contoso", "northwind", "tailspin"))
    assert (folder / "out" / "contoso" / "audit.jsonl").stat().st_size > 0

    code, out, err = run_cli(
        capsys,
        "plan",
        "--tenants",
        "tenants.yaml",
        "--only",
        "contoso,northwind",
        "--only",
        "tailspin",
        "--out-dir",
        "again",
        "--format",
        "json",
        "--detailed-exitcode",
    )
    assert code == 0, out + err
    assert {n: r["changes"] for n, r in _rows(out).items()} == {
        "contoso": 0,
        "northwind": 0,
        "tailspin": 0,
    }


def test_matrix_for_ci_and_check(
    fleet: tuple[Emulator, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys, "tenants", "matrix", "--tenants", "tenants.yaml", "--only", "@pilot"
    )
    assert code == 0
    assert json.loads(out) == {
        "include": [
            {
                "name": "contoso",
                "tenant": "contoso.onmicrosoft.com",
                "cloud": "commercial",
                "groups": "pilot",
            },
            {
                "name": "fabrikam",
                "tenant": "fabrikam.onmicrosoft.com",
                "cloud": "commercial",
                "groups": "pilot",
            },
        ]
    }
    code, out, _ = run_cli(
        capsys, "tenants", "matrix", "--tenants", "tenants.yaml", "--format", "azure-devops"
    )
    assert set(json.loads(out)) == {"contoso", "fabrikam", "northwind", "tailspin", "adatum"}
    code, out, _ = run_cli(capsys, "tenants", "check", "--tenants", "tenants.yaml")
    assert code == 0 and "OK (5 tenant(s))" in out


def test_a_bad_overlay_fails_its_tenant_only(
    fleet: tuple[Emulator, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = fleet
    (folder / "overlays" / "northwind.yaml").write_text(
        "version: 1\nassignments:\n  rules:\n    - name: x\n      before: nosuch\n"
        "      policy: Block Basic Auth\n      match: {department: [Sales]}\n",
        encoding="utf-8",
    )
    code, out, err = run_cli(
        capsys, "drift", "--tenants", "tenants.yaml", "--only", "wave2", "--format", "json"
    )
    assert "no tenant 'wave2'" in err and code == 1  # a group is named with @
    code, out, err = run_cli(
        capsys, "drift", "--tenants", "tenants.yaml", "--only", "@wave2", "--format", "json"
    )
    rows = _rows(out)
    assert code == 1
    assert rows["northwind"]["error"].startswith("overlays/northwind.yaml:5:15: ")
    assert rows["tailspin"]["exit_code"] == 2  # drift found, unharmed by its neighbour
    code, out, err = run_cli(capsys, "tenants", "check", "--tenants", "tenants.yaml")
    assert code == 1 and "northwind: overlays/northwind.yaml:5:15: " in err


def test_doctor_report_and_export_for_every_tenant(
    fleet: tuple[Emulator, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    emu, folder = fleet
    code, out, _ = run_cli(capsys, "doctor", "--tenants", "tenants.yaml")
    assert code == 1  # adatum: the app was never consented there
    assert "== adatum (adatum.onmicrosoft.com)" in out and "AADSTS700016" in out
    assert "doctor: 4 of 5 tenant(s) ready; fix adatum; nothing was written" in out
    assert all(s.stats_dict()["writes_changed_state"] == 0 for s in emu.services)

    code, out, _ = run_cli(
        capsys,
        "report",
        "--tenants",
        "tenants.yaml",
        "--out-dir",
        "rep",
        "--format",
        "json",
        "--sign-in-days",
        "0",
    )
    rows = {r["name"]: r for r in json.loads(out)["tenants"]}
    assert code == 1 and rows["adatum"]["error"]
    sizes = {n: rows[n]["users"] for n in ("contoso", "fabrikam", "northwind", "tailspin")}
    assert sizes == {
        n: len(emu.tenant(k).state.users)
        for k, n in enumerate(("contoso", "fabrikam", "northwind", "tailspin"), start=1)
    }
    assert len(set(sizes.values())) == 4  # tenants of different sizes
    assert (folder / "rep" / "fabrikam" / "report.json").is_file()

    code, out, _ = run_cli(
        capsys, "export", "--tenants", "tenants.yaml", "--only", "contoso", "--out-dir", "exp"
    )
    assert code == 0, out
    overlay = (folder / "exp" / "contoso" / "overlay.yaml").read_text(encoding="utf-8")
    assert overlay.startswith("# The overlay that makes")
    # The exported file plans to nothing against the tenant it came from.
    code, out, err = run_cli(
        capsys,
        "plan",
        "-c",
        str(folder / "exp" / "contoso" / "policies.yaml"),
        "--detailed-exitcode",
    )
    assert code == 0, out + err


def test_baseline_and_drift_findings_per_tenant(
    fleet: tuple[Emulator, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """report --baseline --tenants: one JUnit suite (and one SARIF run) per tenant, the
    unconsented tenant a failing case of its own; drift --tenants --format sarif: one run per
    tenant, each finding located in the file that wrote it (base or overlay)."""
    from junitparser import JUnitXml

    code, out, err = run_cli(
        capsys, "report", "--baseline", "--tenants", "tenants.yaml", "--format", "junit"
    )
    assert code == 1  # adatum cannot be read: the worst exit code
    suites = {suite.name: suite for suite in JUnitXml.fromstring(out)}
    assert sorted(suites) == sorted(
        f"authpolicy baseline: {n}"
        for n in ("contoso", "fabrikam", "northwind", "tailspin", "adatum")
    )
    assert [case.name for case in suites["authpolicy baseline: adatum"]] == ["read the tenant"]
    assert suites["authpolicy baseline: contoso"].tests == 8
    assert "adatum" in err
    code, out, _ = run_cli(
        capsys,
        "report",
        "--baseline",
        "--tenants",
        "tenants.yaml",
        "--only",
        "@pilot",
        "--format",
        "sarif",
    )
    runs = json.loads(out)["runs"]
    assert code == 2
    assert [r["automationDetails"]["id"] for r in runs] == [
        "authpolicy/baseline/contoso/",
        "authpolicy/baseline/fabrikam/",
    ]
    code, out, _ = run_cli(
        capsys, "drift", "--tenants", "tenants.yaml", "--only", "northwind", "--format", "sarif"
    )
    (run,) = json.loads(out)["runs"]
    assert code == 2 and run["automationDetails"]["id"] == "authpolicy/drift/northwind/"
    files = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]
    }
    # The overlay's front-desk rule is found in the overlay, the rest in the base.
    assert files == {"base.yaml", "overlays/northwind.yaml"}
