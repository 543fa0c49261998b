"""tenants.yaml and overlays on their own: located errors, selection, per-tenant credentials,
and every merge rule (docs/fleet.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.errors import ConfigError
from reconciler.fleet.inventory import load_inventory
from reconciler.fleet.overlay import merge_files

BASE = """version: 1
policies:
  Block Basic Auth: {allow: []}
  SMTP relay devices: {allow: [smtp]}
default_policy: Block Basic Auth
assignments:
  rules:
    - name: devices
      policy: SMTP relay devices
      match: {upn: ["scanner-*@contoso.com"]}
    - name: everyone
      policy: Block Basic Auth
      match: all
safety:
  max_user_changes: 10%
  max_policy_deletes: 1
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def inventory(tmp_path: Path, tenants: str, extra: str = "") -> Path:
    write(tmp_path, "base.yaml", BASE)
    return write(
        tmp_path, "tenants.yaml", f"version: 1\nbase: base.yaml\n{extra}tenants:\n{tenants}"
    )


def errors(call: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        call()  # type: ignore[operator]
    return info.value.problems


def test_inventory_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        "  contoso: {tenant: contoso.onmicrosoft.com, overlya: x.yaml}\n"
        "  Bad Name: {tenant: b.onmicrosoft.com}\n",
    )
    problems = errors(lambda: load_inventory(path))
    assert any(p.startswith(f"{path}:4:") and "overlya" in p and "overlay" in p for p in problems)
    assert any(p.startswith(f"{path}:5:") and "Bad Name" in p for p in problems)


def test_a_tenant_named_twice_and_two_entries_for_one_tenant(tmp_path: Path) -> None:
    twice = inventory(
        tmp_path, "  a: {tenant: a.onmicrosoft.com}\n  a: {tenant: b.onmicrosoft.com}\n"
    )
    # At the duplicate, not at the first: the reader's own position is kept.
    assert any(
        p.startswith(f"{twice}:5:3: tenants.a: duplicate key 'a'")
        for p in errors(lambda: load_inventory(twice))
    )
    same = inventory(
        tmp_path, "  a: {tenant: x.onmicrosoft.com}\n  b: {tenant: X.onmicrosoft.com}\n"
    )
    (problem,) = errors(lambda: load_inventory(same))
    assert problem.startswith(f"{same}:5:") and "already listed as 'a'" in problem


def test_selection_by_name_and_group(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        "  a: {tenant: a.onmicrosoft.com, groups: [eu]}\n"
        "  b: {tenant: b.onmicrosoft.com, groups: [eu, pilot]}\n"
        "  c: {tenant: c.onmicrosoft.com}\n",
    )
    inv = load_inventory(path)
    assert [t.name for t in inv.select([])] == ["a", "b", "c"]
    assert [t.name for t in inv.select(["@pilot", "c"])] == ["b", "c"]
    assert [t.name for t in inv.select(["c,a"])] == ["a", "c"]
    assert "no tenant 'd'" in errors(lambda: inv.select(["d"]))[0]
    assert "group 'us'" in errors(lambda: inv.select(["@us"]))[0]


def test_credentials_per_tenant_and_per_cloud(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        "  a: {tenant: a.onmicrosoft.com}\n"
        "  b: {tenant: b.onmicrosoft.us, cloud: gcc-high}\n"
        "  c: {tenant: c.onmicrosoft.com, client_id: c-app, credential_env_prefix: C_}\n",
        extra="clouds:\n  gcc-high: {client_id: us-app, credential_env_prefix: GCCH_}\n",
    )
    inv = load_inventory(path)
    environ = {
        "AZURE_TENANT_ID": "elsewhere",
        "AZURE_TENANT_ID_2": "x",
        "AZURE_CLIENT_ID": "main-app",
        "AZURE_CLIENT_SECRET": "main-secret",
        "GCCH_AZURE_CLIENT_SECRET": "us-secret",
        "C_AZURE_CLIENT_CERTIFICATE_PATH": "/c.pem",
    }
    a, b, c = (t.environ(inv, environ) for t in inv.tenants)
    assert (a["AZURE_TENANT_ID"], a["AZURE_CLIENT_ID"], a["AZURE_CLIENT_SECRET"]) == (
        "a.onmicrosoft.com",
        "main-app",
        "main-secret",
    )
    assert "AZURE_TENANT_ID_2" not in a
    assert (b["AUTHPOLICY_CLOUD"], b["AZURE_CLIENT_ID"], b["AZURE_CLIENT_SECRET"]) == (
        "gcc-high",
        "us-app",
        "us-secret",
    )
    assert c["AZURE_CLIENT_ID"] == "c-app" and c["AZURE_CLIENT_CERTIFICATE_PATH"] == "/c.pem"
    assert "AZURE_CLIENT_SECRET" not in c  # another app's secret is never handed over


def _merge(tmp_path: Path, overlay: str) -> tuple[dict, list[str]]:
    path = inventory(tmp_path, "  a: {tenant: a.onmicrosoft.com, overlay: o.yaml}\n")
    write(tmp_path, "o.yaml", overlay)
    inv = load_inventory(path)
    merged = merge_files(inv.base, inv.tenants[0].overlay, inv.tenants[0])
    data = yaml.safe_load(merged.text(inv.tenants[0], "test"))
    return data, merged.warnings


def test_merge_rules(tmp_path: Path) -> None:
    data, warnings = _merge(
        tmp_path,
        "version: 1\n"
        "policies:\n"
        "  smtp relay devices: {allow: [smtp, pop]}\n"  # replaces by name, case-insensitively
        "  Helpdesk: {allow: [imap]}\n"
        "assignments:\n"
        "  rules:\n"
        "    - name: helpdesk\n"
        "      before: everyone\n"
        "      policy: Helpdesk\n"
        "      match: {department: [Support]}\n"
        "    - name: devices\n"  # replaces in place
        "      policy: SMTP relay devices\n"
        "      match: {upn: ['printer-*@contoso.com']}\n"
        "safety:\n"
        "  max_policy_deletes: 0\n",
    )
    assert data["tenant"] == "a.onmicrosoft.com"
    assert list(data["policies"]) == ["Block Basic Auth", "smtp relay devices", "Helpdesk"]
    assert data["policies"]["smtp relay devices"] == {"allow": ["smtp", "pop"]}
    names = [r["name"] for r in data["assignments"]["rules"]]
    assert names == ["devices", "helpdesk", "everyone"]
    assert data["assignments"]["rules"][0]["match"] == {"upn": ["printer-*@contoso.com"]}
    assert all("before" not in r for r in data["assignments"]["rules"])
    # Key by key: the overlay's guard, and the base's other guard kept.
    assert data["safety"] == {"max_user_changes": "10%", "max_policy_deletes": 0}
    assert warnings == []
    # A new rule without `before:` would land after `match: all`, where it can never match:
    # a warning placed in the overlay, and the rule left out.
    data, warnings = _merge(
        tmp_path,
        "version: 1\nassignments:\n  rules:\n"
        "    - name: late\n      policy: Block Basic Auth\n"
        "      match: {department: [Sales]}\n",
    )
    assert [r["name"] for r in data["assignments"]["rules"]] == ["devices", "everyone"]
    (warning,) = warnings
    assert warning.startswith(f"{tmp_path / 'o.yaml'}:4:7: rule 'late' would come after rule")
    assert "`before: everyone`" in warning


def test_merge_errors_are_located_in_the_file_they_are_in(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    problems = errors(
        lambda: _merge(
            tmp_path,
            "version: 1\n"
            "tenant: x.onmicrosoft.com\n"
            "assignments:\n"
            "  rules:\n"
            "    - name: early\n"
            "      before: nosuch\n"
            "      policy: Block Basic Auth\n"
            "      match: all\n",
        )
    )
    assert any(p.startswith(f"{overlay}:2:1: tenant:") for p in problems)
    assert any(p.startswith(f"{overlay}:6:15:") and "no rule named 'nosuch'" in p for p in problems)
    # A schema error in the overlay alone, at its line.
    (problem,) = errors(lambda: _merge(tmp_path, "version: 1\nsafety:\n  max_user_change: 5\n"))
    assert problem.startswith(f"{overlay}:3:3: safety.max_user_change: unknown key")
    # A reference the merged state cannot resolve is placed in the overlay, not the base.
    (problem,) = errors(
        lambda: _merge(
            tmp_path,
            "version: 1\nassignments:\n  rules:\n    - name: x\n      before: everyone\n"
            "      policy: Nowhere\n      match: {department: [Sales]}\n",
        )
    )
    assert problem.startswith(f"{overlay}:6:15:") and "Nowhere" in problem
    # Policies must merge with policies.
    (problem,) = errors(lambda: _merge(tmp_path, "version: 1\npolicies: [a, b]\n"))
    assert problem.startswith(f"{overlay}:") and "policies" in problem


def test_a_shared_base_names_no_tenant(tmp_path: Path) -> None:
    path = inventory(tmp_path, "  a: {tenant: a.onmicrosoft.com}\n")
    write(tmp_path, "base.yaml", "tenant: contoso.onmicrosoft.com\n" + BASE)
    inv = load_inventory(path)
    problems = errors(lambda: merge_files(inv.base, None, inv.tenants[0]))
    assert problems == [problems[0]], problems
    problem = problems[0]
    assert problem.startswith(f"{inv.base}:1:1: tenant: a shared base names no tenant")


def test_the_combined_comment_keeps_within_the_size_budget() -> None:
    from reconciler.fleet.inventory import TenantEntry
    from reconciler.fleet.render import COMMENT_BUDGET, render_markdown
    from reconciler.fleet.run import TenantOutcome

    outcomes = [
        TenantOutcome(
            TenantEntry(f"t{k:03}", f"t{k}.onmicrosoft.com"),
            exit_code=1,
            error="boom",
            problems=["x" * 2000],
        )
        for k in range(60)
    ]
    text = render_markdown(outcomes, "plan")
    assert len(text) <= COMMENT_BUDGET + 1000
    rows = [line for line in text.splitlines() if line.startswith("| t0")]
    assert len(rows) == 60  # every tenant keeps its row in the table
    assert "tenant plan(s) left out to keep this comment under GitHub's size limit" in text


def test_an_exported_overlay_merges_back_into_the_tenant(tmp_path: Path) -> None:
    from reconciler.fleet.verbs import overlay_against

    base = yaml.safe_load(BASE)
    tenant = yaml.safe_load(BASE)
    tenant["policies"]["Helpdesk"] = {"allow": ["imap"]}
    tenant["assignments"]["rules"].insert(
        1, {"name": "helpdesk", "policy": "Helpdesk", "match": {"department": ["Support"]}}
    )
    tenant["safety"]["max_policy_deletes"] = 0
    overlay = overlay_against(base, tenant)
    assert overlay["assignments"]["rules"][0]["before"] == "everyone"
    assert overlay["safety"] == {"max_policy_deletes": 0}
    data, _ = _merge(tmp_path, yaml.safe_dump(overlay, sort_keys=False))
    data.pop("tenant")
    assert data == tenant
