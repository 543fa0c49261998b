"""Many tenants at once: plan, drift and apply for every tenant of tenants.yaml, concurrently
with a bound, each with its own connection, token and throttling state.

One failing tenant (bad overlay, no consent, throttled out) is reported on its row and never
stops or corrupts the others; the exit code is the worst tenant's (1 > 3 > 2 > 0). Per tenant,
DIR/NAME/ holds `policies.yaml` (the merged desired state, what plan and apply read),
`plan.json`, and after apply `apply.log` and `audit.jsonl`.

plan and drift run in this process (threads: the reads wait on the network); apply runs each
tenant's `authpolicy apply DIR/NAME/plan.json` in a process of its own, so every tenant's apply
is exactly the single-tenant apply, saved-plan rules and all, and its output stays its own.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reconciler.errors import AuthPolicyError
from reconciler.fleet.inventory import Inventory, TenantEntry
from reconciler.fleet.overlay import merge_files
from reconciler.model import ExitCode, Plan

T = TypeVar("T")
DEFAULT_TENANT_CONCURRENCY = 8  # a laptop or a 2-core CI runner: the work is waiting on I/O
SEVERITY = {ExitCode.ERROR: 3, ExitCode.BLOCKED: 2, ExitCode.CHANGES: 1, ExitCode.OK: 0}


def worst(codes: Sequence[int]) -> int:
    """The exit code of the worst tenant: 1 > 3 > 2 > 0."""
    return max(codes, key=lambda c: SEVERITY.get(ExitCode(c), 3), default=ExitCode.OK)


@dataclass
class TenantOutcome:
    """What happened to one tenant."""

    entry: TenantEntry
    exit_code: int = ExitCode.OK
    plan: Plan | None = None
    error: str | None = None
    problems: list[str] = field(default_factory=list)  # every line of the error
    warnings: list[str] = field(default_factory=list)
    config: Path | None = None
    plan_file: Path | None = None
    log_file: Path | None = None
    seconds: float = 0.0


def add_fleet_arguments(parser: argparse.ArgumentParser, *, out_dir: bool = True) -> None:
    """--tenants, --only, --out-dir, --tenant-concurrency."""
    group = parser.add_argument_group("many tenants (tenants.yaml)")
    group.add_argument(
        "--tenants", metavar="TENANTS.yaml", help="run for every tenant of this inventory"
    )
    group.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME|@GROUP",
        help="with --tenants: only these tenants (repeatable; comma-separated)",
    )
    if out_dir:
        group.add_argument(
            "--out-dir",
            metavar="DIR",
            help="with --tenants: per-tenant files go here (default: ./authpolicy-tenants)",
        )
    group.add_argument(
        "--tenant-concurrency",
        type=int,
        default=DEFAULT_TENANT_CONCURRENCY,
        metavar="N",
        help=f"with --tenants: tenants worked on at once (default {DEFAULT_TENANT_CONCURRENCY})",
    )


def check_fleet_arguments(args: argparse.Namespace) -> None:
    """Refuse single-tenant connection flags in fleet mode (the inventory names each tenant)."""
    if getattr(args, "tenant_id", None):
        raise AuthPolicyError(
            "--tenant-id cannot be used with --tenants: tenants.yaml names every tenant"
        )
    if getattr(args, "config", None):
        raise AuthPolicyError(
            "-c/--config cannot be used with --tenants: tenants.yaml names the base and overlays"
        )
    if args.tenant_concurrency < 1:
        raise AuthPolicyError("--tenant-concurrency must be at least 1")


def tenant_dir(out_dir: Path, entry: TenantEntry) -> Path:
    return out_dir / entry.name


def _one_line(exc: BaseException) -> str:
    lines = [str(line) for line in getattr(exc, "problems", None) or [str(exc)]]
    first = lines[0].splitlines()[0] if lines and lines[0] else type(exc).__name__
    return first + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")


def prepare(inventory: Inventory, entry: TenantEntry, out_dir: Path) -> tuple[Path, list[str]]:
    """Merge the tenant's overlay over the base and write DIR/NAME/policies.yaml."""
    merged = merge_files(inventory.base, entry.overlay, entry)
    folder = tenant_dir(out_dir, entry)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policies.yaml"
    sources = str(inventory.base) + (f" + {entry.overlay}" if entry.overlay else "")
    temporary = folder / ".policies.yaml.tmp"
    temporary.write_text(merged.text(entry, sources), encoding="utf-8")
    os.replace(temporary, path)
    return path, merged.warnings


def plan_tenants(
    args: argparse.Namespace,
    inventory: Inventory,
    entries: Sequence[TenantEntry],
    out_dir: Path,
    verb: str,
    environ: Mapping[str, str] = os.environ,
) -> list[TenantOutcome]:
    """Plan (or drift-check) every tenant, at most args.tenant_concurrency at a time."""

    def one(entry: TenantEntry) -> TenantOutcome:
        started = time.monotonic()
        outcome = TenantOutcome(entry)
        try:
            outcome.config, outcome.warnings = prepare(inventory, entry, out_dir)
            outcome.plan = _plan_one(args, entry, outcome.config, inventory, environ, verb)
            outcome.plan_file = tenant_dir(out_dir, entry) / "plan.json"
            from reconciler.commands.plan import write_plan_file

            write_plan_file(str(outcome.plan_file), outcome.plan)
            outcome.exit_code = _plan_code(outcome.plan, verb, args)
        except AuthPolicyError as exc:
            outcome.error, outcome.exit_code = _one_line(exc), ExitCode.ERROR
            outcome.problems = [str(p) for p in getattr(exc, "problems", None) or [str(exc)]]
        except Exception as exc:  # one tenant's bug must not take the fleet down
            outcome.error = f"internal error: {type(exc).__name__}: {exc}"
            outcome.exit_code = ExitCode.ERROR
        outcome.seconds = time.monotonic() - started
        return outcome

    return _bounded(one, entries, args.tenant_concurrency)


def _plan_code(plan: Plan, verb: str, args: argparse.Namespace) -> int:
    if verb == "drift":
        return ExitCode.CHANGES if plan.has_changes else ExitCode.OK
    if not getattr(args, "detailed_exitcode", False) or not plan.has_changes:
        return ExitCode.OK
    return ExitCode.BLOCKED if plan.blocked else ExitCode.CHANGES


def _plan_one(
    args: argparse.Namespace,
    entry: TenantEntry,
    config: Path,
    inventory: Inventory,
    environ: Mapping[str, str],
    verb: str,
) -> Plan:
    from reconciler.plan.pipeline import plan_from_args

    tenant_args = copy.copy(args)
    tenant_args.config = str(config)
    return plan_from_args(tenant_args, entry.environ(inventory, environ), verb=verb).plan


def _bounded(
    work: Callable[[TenantEntry], T], entries: Sequence[TenantEntry], limit: int
) -> list[T]:
    """work(entry) for every entry, at most `limit` at once, results in entry order."""
    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(entries) or 1))) as pool:
        return list(pool.map(work, entries))


def apply_tenants(
    args: argparse.Namespace,
    inventory: Inventory,
    entries: Sequence[TenantEntry],
    plans_dir: Path,
    extra: Sequence[str],
    environ: Mapping[str, str] = os.environ,
) -> list[TenantOutcome]:
    """Each tenant's saved plan (DIR/NAME/plan.json) applied by `authpolicy apply` in a process
    of its own: the single-tenant saved-plan rules, guards and audit, per tenant."""

    def one(entry: TenantEntry) -> TenantOutcome:
        started = time.monotonic()
        outcome = TenantOutcome(entry)
        folder = tenant_dir(plans_dir, entry)
        plan_file = folder / "plan.json"
        if not plan_file.is_file():
            outcome.error = f"no saved plan {plan_file}: run plan --tenants --out-dir {plans_dir}"
            outcome.exit_code = ExitCode.ERROR
            return outcome
        outcome.plan_file, outcome.log_file = plan_file, folder / "apply.log"
        argv = [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            str(plan_file),
            "--audit-log",
            str(folder / "audit.jsonl"),
            *extra,
        ]
        env = entry.environ(inventory, environ)
        env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
        with open(outcome.log_file, "wb") as log:
            done = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        outcome.exit_code = done.returncode if done.returncode in (0, 1, 2, 3) else ExitCode.ERROR
        if outcome.exit_code != ExitCode.OK:
            outcome.error = _last_error(outcome.log_file)
        outcome.seconds = time.monotonic() - started
        return outcome

    return _bounded(one, entries, args.tenant_concurrency)


def _last_error(path: Path) -> str:
    """The line that says why an apply did not finish (its `error:` line, else the last)."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln]
    except OSError:
        return "no output"
    errors = [ln for ln in lines if ln.startswith(("error:", "blocked:"))]
    return (errors or lines or ["no output"])[-1][:300]


def summary_rows(outcomes: Sequence[TenantOutcome]) -> list[dict[str, Any]]:
    """One row per tenant: name, tenant, changes, weakens, guards, active users blocked, error."""
    rows = []
    for o in outcomes:
        plan = o.plan
        rows.append(
            {
                "name": o.entry.name,
                "tenant": o.entry.tenant,
                "exit_code": int(o.exit_code),
                "changes": len(plan.changes) if plan is not None else None,
                "weakens": sum(1 for c in plan.changes if c.weakens) if plan is not None else None,
                "guards": [g.name for g in plan.guards] if plan is not None else [],
                "active_users_blocked": plan.evidence.active_users_blocked
                if plan is not None and plan.evidence is not None
                else None,
                "error": o.error,
                "warnings": list(o.warnings) + (list(plan.warnings) if plan is not None else []),
                "plan_file": str(o.plan_file) if o.plan_file else None,
                "log_file": str(o.log_file) if o.log_file else None,
                "seconds": round(o.seconds, 3),
            }
        )
    return rows
