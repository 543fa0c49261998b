"""The `--tenants` side of plan, drift and apply, and `authpolicy tenants matrix|check`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from reconciler.errors import AuthPolicyError
from reconciler.fleet.inventory import load_inventory
from reconciler.fleet.render import render_fleet
from reconciler.fleet.run import (
    apply_tenants,
    check_fleet_arguments,
    plan_tenants,
    worst,
)

DEFAULT_OUT_DIR = "authpolicy-tenants"


def run_planning(args: argparse.Namespace, verb: str) -> int:
    """plan|drift --tenants: every tenant's plan, one combined output, the worst exit code."""
    check_fleet_arguments(args)
    if getattr(args, "out", None):
        raise AuthPolicyError(
            "--out cannot be used with --tenants: each tenant's plan is saved as "
            "DIR/NAME/plan.json (--out-dir DIR)"
        )
    inventory = load_inventory(args.tenants)
    entries = inventory.select(args.only)
    out_dir = Path(args.out_dir or DEFAULT_OUT_DIR).resolve()
    outcomes = plan_tenants(args, inventory, entries, out_dir, verb)
    for fmt, name in (("json", f"fleet-{verb}.json"), ("markdown", f"fleet-{verb}.md")):
        (out_dir / name).write_text(render_fleet(outcomes, verb, fmt, args.show_users), "utf-8")
    if args.format in ("sarif", "junit"):  # drift only: one run (or suite) per tenant
        from reconciler.findings.drift import render_drift
        from reconciler.fleet.verbs import located_desired

        items = [
            (o.entry.name, o.plan, located_desired(inventory, o.entry))
            for o in outcomes
            if o.plan is not None
        ]
        sys.stdout.write(render_drift(items, args.format, mask_users=args.mask_users))
        for o in outcomes:
            if o.error is not None:
                print(f"{o.entry.name}: {o.error}", file=sys.stderr)
    else:
        sys.stdout.write(render_fleet(outcomes, verb, args.format, args.show_users))
    print(
        f"Per-tenant plans in {out_dir}/NAME/plan.json; combined: {out_dir}/fleet-{verb}.md, "
        f"{out_dir}/fleet-{verb}.json",
        file=sys.stderr,
    )
    return worst([o.exit_code for o in outcomes])


def run_apply(args: argparse.Namespace) -> int:
    """apply --tenants --plans DIR: each tenant's saved plan, in a process of its own."""
    check_fleet_arguments(args)
    if args.plan_file is not None:
        raise AuthPolicyError(
            "with --tenants, name the folder of saved plans (--plans DIR), not one plan file"
        )
    if not args.auto_approve:
        raise AuthPolicyError(
            "apply --tenants runs without prompts: review the saved plans, then pass --auto-approve"
        )
    plans = Path(args.plans or DEFAULT_OUT_DIR).resolve()
    inventory = load_inventory(args.tenants)
    entries = inventory.select(args.only)
    extra = ["--auto-approve", "--check-users", args.check_users]
    extra += ["--max-concurrency", str(args.max_concurrency)]
    if args.force is not None:
        extra.append("--force" if args.force == "all" else f"--force={args.force}")
    if args.allow_replace:
        extra.append("--allow-replace")
    outcomes = apply_tenants(args, inventory, entries, plans, extra)
    width = max((len(o.entry.name) for o in outcomes), default=6)
    print(f"authpolicy apply for {len(outcomes)} tenant(s) from {plans}")
    for o in outcomes:
        status = "applied" if o.exit_code == 0 else f"exit {o.exit_code}: {o.error}"
        print(f"  {o.entry.name.ljust(width)}  {status}  (log: {o.log_file or '-'})")
    code = worst([o.exit_code for o in outcomes])
    print(f"Fleet: {len(outcomes)} tenant(s), exit code {code} (the worst tenant's).")
    return code


def _combine(args: argparse.Namespace, entries: tuple[Any, ...]) -> int:
    """Each tenant's saved plan read back; a tenant without one (its job failed) is an error
    row. Exit code: the worst tenant's, as --detailed-exitcode would give it."""
    from reconciler.commands.apply import read_saved_plan
    from reconciler.fleet.run import TenantOutcome

    plans = Path(args.plans)
    outcomes = []
    for entry in entries:
        path = plans / entry.name / "plan.json"
        outcome = TenantOutcome(entry, plan_file=path)
        if not path.is_file():
            outcome.exit_code, outcome.error = 1, f"no plan at {path} (did its job fail?)"
        else:
            try:
                outcome.plan = read_saved_plan(str(path))
            except AuthPolicyError as exc:
                outcome.exit_code, outcome.error = 1, str(exc)
            else:
                plan = outcome.plan
                outcome.exit_code = 0 if not plan.has_changes else 3 if plan.blocked else 2
        outcomes.append(outcome)
    sys.stdout.write(render_fleet(outcomes, "plan", args.format, args.show_users))
    return worst([o.exit_code for o in outcomes])


# --------------------------------------------------------------------------- `tenants` verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tenants_command", metavar="COMMAND")
    matrix = sub.add_parser("matrix", help="the JSON a CI matrix fans out on, one job per tenant")
    check = sub.add_parser("check", help="check tenants.yaml and every tenant's merged overlay")
    combine = sub.add_parser(
        "combine",
        help="one combined plan from the per-tenant plans the matrix jobs saved "
        "(DIR/NAME/plan.json)",
    )
    combine.add_argument("--plans", required=True, metavar="DIR")
    combine.add_argument("--format", choices=("text", "markdown", "json"), default="markdown")
    combine.add_argument("--show-users", type=int, default=20, metavar="N")
    for each in (matrix, check, combine):
        each.add_argument("--tenants", required=True, metavar="TENANTS.yaml")
        each.add_argument("--only", action="append", default=[], metavar="NAME|@GROUP")
    matrix.add_argument(
        "--format",
        choices=("github", "azure-devops"),
        default="github",
        help='github: {"include": [...]} for strategy.matrix; azure-devops: {NAME: {...}}',
    )


def run(args: argparse.Namespace) -> int:
    if args.tenants_command is None:
        print("usage: authpolicy tenants {matrix,check} --tenants TENANTS.yaml", file=sys.stderr)
        return 1
    inventory = load_inventory(args.tenants)
    entries = inventory.select(args.only)
    if args.tenants_command == "combine":
        return _combine(args, entries)
    if args.tenants_command == "matrix":
        rows = [
            {"name": e.name, "tenant": e.tenant, "cloud": e.cloud, "groups": ",".join(e.groups)}
            for e in entries
        ]
        if args.format == "github":
            doc: object = {"include": rows}
        else:
            doc = {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in rows}
        print(json.dumps(doc, separators=(",", ":")))
        return 0
    from reconciler.fleet.overlay import merge_files

    problems: list[str] = []
    for entry in entries:
        try:
            merged = merge_files(inventory.base, entry.overlay, entry)
        except AuthPolicyError as exc:
            problems += [f"{entry.name}: {p}" for p in getattr(exc, "problems", [str(exc)])]
            continue
        for warning in merged.warnings:
            print(f"warning: {entry.name}: {warning}", file=sys.stderr)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    print(f"{os.fspath(inventory.path)}: OK ({len(entries)} tenant(s))")
    return 0
