"""doctor, report and export for every tenant of tenants.yaml (read-only, in this process,
concurrently with the same bound as plan): one block or row per tenant, a failing tenant
reported on its own line, the exit code of the worst."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import AuthPolicyError
from reconciler.fleet.command import DEFAULT_OUT_DIR
from reconciler.fleet.inventory import Inventory, TenantEntry, load_inventory
from reconciler.fleet.overlay import KEY_BY_KEY
from reconciler.fleet.run import _bounded, check_fleet_arguments, worst
from reconciler.model import DesiredState, ExitCode, SnapshotNeeds


def _entries(args: argparse.Namespace) -> tuple[Inventory, tuple[TenantEntry, ...]]:
    check_fleet_arguments(args)
    inventory = load_inventory(args.tenants)
    return inventory, inventory.select(args.only)


def _each(
    args: argparse.Namespace,
    inventory: Inventory,
    entries: tuple[TenantEntry, ...],
    work: Any,
    environ: Mapping[str, str],
) -> list[tuple[TenantEntry, Any, str | None]]:
    """(entry, result, error) per tenant; work(entry, env) -> result."""

    def one(entry: TenantEntry) -> Any:
        try:
            return entry, work(entry, entry.environ(inventory, environ)), None
        except AuthPolicyError as exc:
            return entry, None, str(exc).splitlines()[0]
        except Exception as exc:  # one tenant's bug must not take the fleet down (as plan)
            return entry, None, f"internal error: {type(exc).__name__}: {exc}"

    return _bounded(one, entries, args.tenant_concurrency)


def doctor(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """doctor --tenants: every tenant's consent, token, role and access, one block each."""
    from reconciler.tenant.doctor import run_checks

    inventory, entries = _entries(args)
    results = _each(args, inventory, entries, lambda e, env: run_checks(args, env), environ)
    codes = []
    for entry, checks, error in results:
        print(f"== {entry.name} ({entry.tenant})")
        if error is not None:
            print(f"FAIL  {error}")
            codes.append(ExitCode.ERROR)
            continue
        for check in checks:
            print(check.line())
        failed = any(c.status == "FAIL" for c in checks)
        codes.append(ExitCode.ERROR if failed else ExitCode.OK)
    bad = [e.name for (e, _, _), c in zip(results, codes, strict=True) if c]
    print(
        f"doctor: {len(results) - len(bad)} of {len(results)} tenant(s) ready"
        + (f"; fix {', '.join(bad)}" if bad else "")
        + "; nothing was written"
    )
    return worst(codes)


def located_desired(inventory: Inventory, entry: TenantEntry) -> DesiredState:
    """The tenant's merged desired state, its findings located in the base or the overlay
    (whichever file wrote the part), not in the generated DIR/NAME/policies.yaml."""
    from reconciler.desired.loader import build
    from reconciler.fleet.overlay import merge_files

    merged = merge_files(inventory.base, entry.overlay, entry)
    return build(merged.doc, str(inventory.base), file_of=merged.file_of)


def baseline(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """report --baseline --tenants: every tenant's checks, one output (a SARIF run or a JUnit
    suite per tenant); a tenant that cannot be read is an error on its own row."""
    from reconciler.baseline.render import (
        junit_suite,
        render_baseline,
        render_baseline_sarif,
        result_json,
    )
    from reconciler.commands.report import baseline_needs, evaluate_baseline
    from reconciler.findings.junit import Case, Suite, render_junit
    from reconciler.tenant.connect import open_tenant

    inventory, entries = _entries(args)

    def work(entry: TenantEntry, env: Mapping[str, str]) -> Any:
        desired = located_desired(inventory, entry)
        tenant = open_tenant(args, environ=env)
        snapshot = tenant.read_snapshot(baseline_needs(args))
        return evaluate_baseline(args, snapshot, desired, entry.name)

    results = _each(args, inventory, entries, work, environ)
    good = [(e.name, r) for e, r, err in results if err is None]
    errors = [(e, err) for e, _, err in results if err is not None]
    if args.format == "sarif":
        sys.stdout.write(render_baseline_sarif(good))
    elif args.format == "junit":
        # One failing case per unreadable tenant, beside the others' suites.
        broken = [
            Suite(
                f"authpolicy baseline: {e.name}",
                (Case("read the tenant", f"authpolicy.baseline.{e.name}", "fail", err),),
            )
            for e, err in errors
        ]
        sys.stdout.write(render_junit([*(junit_suite(r, name) for name, r in good), *broken]))
    elif args.format == "json":
        doc = {
            "format_version": 1,
            "tenants": [
                {"name": e.name, "tenant": e.tenant, "error": err}
                | ({"baseline": result_json(r)} if r is not None else {})
                for e, r, err in results
            ],
        }
        print(json.dumps(doc, indent=2, default=str))
    else:
        for e, r, err in results:
            print(f"== {e.name} ({e.tenant})")
            print(f"error: {err}" if err is not None else render_baseline(r, args.format))
    for e, err in errors:
        print(f"{e.name}: {err}", file=sys.stderr)
    codes = [
        ExitCode.ERROR if err is not None else ExitCode.CHANGES if r.any_failed else ExitCode.OK
        for _, r, err in results
    ]
    return worst(codes)


def report(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """report --tenants: each tenant's report as DIR/NAME/report.json, one table of headlines."""
    if getattr(args, "baseline", None) is not None:
        return baseline(args, environ)
    from reconciler.report import build_report
    from reconciler.report.machine import render_json
    from reconciler.tenant.connect import open_tenant

    inventory, entries = _entries(args)
    out_dir = Path(args.out_dir or DEFAULT_OUT_DIR).resolve()

    def work(entry: TenantEntry, env: Mapping[str, str]) -> dict[str, int]:
        tenant = open_tenant(args, environ=env)
        needs = SnapshotNeeds(smtp_org=True, mailboxes=True, sign_in_days=args.sign_in_days or None)
        made_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        built = dataclasses.replace(build_report(tenant.read_snapshot(needs)), made_at=made_at)
        folder = out_dir / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(render_json(built), encoding="utf-8")
        return built.counts()

    results = _each(args, inventory, entries, work, environ)
    columns = ("users", "protected", "smtp_basic_auth_possible", "no_policy")
    rows = [
        {"name": e.name, "tenant": e.tenant, "error": err, **(counts or {})}
        for e, counts, err in results
    ]
    if args.format == "json":
        print(json.dumps({"format_version": 1, "tenants": rows}, indent=2))
    else:
        head = ["tenant", *columns, "error"]
        sep = " | " if args.format == "markdown" else "  "
        lines = [sep.join(head)]
        if args.format == "markdown":
            lines = ["| " + lines[0] + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["name"], *(f"{r.get(c, '-'):,}" if c in r else "-" for c in columns)]
            cells.append(r["error"] or "")
            line = sep.join(str(c) for c in cells)
            lines.append(f"| {line} |" if args.format == "markdown" else line)
        print("\n".join(lines))
        print(f"Per-tenant reports in {out_dir}/NAME/report.json", file=sys.stderr)
    return worst([ExitCode.ERROR if err else ExitCode.OK for _, _, err in results])


def export(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """export --tenants [--base FILE]: each tenant exported to DIR/NAME/policies.yaml, and
    against the base, the overlay that makes the base that tenant (DIR/NAME/overlay.yaml)."""
    from reconciler.export import export_policies_yaml
    from reconciler.tenant.connect import open_tenant

    inventory, entries = _entries(args)
    out_dir = Path(args.out_dir or DEFAULT_OUT_DIR).resolve()
    base_path = Path(args.base) if args.base else inventory.base
    try:
        base = yaml.safe_load(base_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AuthPolicyError(f"{base_path}: cannot read the base ({exc})") from None

    def work(entry: TenantEntry, env: Mapping[str, str]) -> str:
        tenant = open_tenant(args, environ=env)
        snapshot = tenant.read_snapshot(SnapshotNeeds(smtp_org=True, mailboxes=True))
        result = export_policies_yaml(snapshot, tenant_name=entry.tenant)
        folder = out_dir / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "policies.yaml").write_text(result.text, encoding="utf-8")
        overlay = overlay_against(base, yaml.safe_load(result.text) or {})
        text = (
            f"# The overlay that makes {base_path} tenant {entry.name} as exported.\n"
            + yaml.safe_dump(overlay, sort_keys=False, allow_unicode=True, width=100)
        )
        (folder / "overlay.yaml").write_text(text, encoding="utf-8")
        return str(folder / "overlay.yaml")

    results = _each(args, inventory, entries, work, environ)
    for entry, path, error in results:
        print(f"{entry.name}: {error}" if error else f"{entry.name}: {path}")
    return worst([ExitCode.ERROR if err else ExitCode.OK for _, _, err in results])


def overlay_against(base: dict[str, Any], tenant: dict[str, Any]) -> dict[str, Any]:
    """The smallest overlay (by the merge rules) that turns `base` into `tenant`."""
    out: dict[str, Any] = {"version": 1}
    policies = {k.casefold(): v for k, v in (base.get("policies") or {}).items()}
    changed = {
        name: spec
        for name, spec in (tenant.get("policies") or {}).items()
        if policies.get(name.casefold()) != spec
    }
    if changed:
        out["policies"] = changed
    base_rules = {
        str(r.get("name", "")).casefold(): r
        for r in (base.get("assignments") or {}).get("rules", [])
    }
    tenant_assign = tenant.get("assignments") or {}
    rules = []
    names = [r.get("name") for r in tenant_assign.get("rules", [])]
    for index, rule in enumerate(tenant_assign.get("rules", [])):
        if base_rules.get(str(rule.get("name", "")).casefold()) == rule:
            continue
        rule = copy.deepcopy(rule)
        later = [n for n in names[index + 1 :] if str(n).casefold() in base_rules]
        if later and str(rule.get("name", "")).casefold() not in base_rules:
            rule["before"] = later[0]
        rules.append(rule)
    assignments = {
        k: v
        for k, v in tenant_assign.items()
        if k != "rules" and (base.get("assignments") or {}).get(k) != v
    }
    if rules:
        assignments["rules"] = rules
    if assignments:
        out["assignments"] = assignments
    for key, value in tenant.items():
        if key in ("version", "tenant", "policies", "assignments"):
            continue
        if key in KEY_BY_KEY and isinstance(value, dict):
            diff = {k: v for k, v in value.items() if (base.get(key) or {}).get(k) != v}
            if diff:
                out[key] = diff
        elif base.get(key) != value:
            out[key] = value
    return out
