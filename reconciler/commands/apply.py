"""`authpolicy apply`: plan, show, confirm, execute, verify; or execute a reviewed saved plan.

The promise to the admin: nothing is written that the plan did not show, everything the plan
showed is written or reported as failed, and a rerun finishes the job.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.apply import ApplyReport, AuditLog, default_audit_path, execute_plan
from reconciler.apply.audit import run_record
from reconciler.apply.executor import INTERRUPTED
from reconciler.apply.progress import PhaseLines, ProgressBar
from reconciler.apply.reconcile import reconcile, unfinished_intents
from reconciler.apply.reconcile import summary as reconcile_summary
from reconciler.apply.replace import plan_with_replaces
from reconciler.apply.report import describe_change
from reconciler.apply.staleness import check_saved_plan
from reconciler.apply.verify import USER_SAMPLE, VERIFY_USERS, Verification, verify_report
from reconciler.errors import AuthPolicyError, GuardError, StalePlanError
from reconciler.model import ExitCode, Plan, PolicyReplace
from reconciler.plan.pipeline import PlanRun, add_plan_source_arguments, plan_from_args
from reconciler.plan.planner import GUARD_NAMES, guards_of
from reconciler.render.options import DEFAULT_SHOW_USERS, show_users_value

SHOW_FAILURES = 20
INTERRUPTED_EXIT = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan_file", nargs="?", metavar="PLAN.json", help="a saved, reviewed plan")
    parser.add_argument(
        "--auto-approve", action="store_true", help="do not ask for confirmation (CI)"
    )
    parser.add_argument(
        "--force",
        nargs="?",
        const="all",
        default=None,
        metavar="NAME[,NAME]",
        help="apply even when safety guards block the plan: --force overrides every guard, "
        "--force=max_user_changes only the ones named (the audit records which)",
    )
    parser.add_argument(
        "--allow-replace",
        action="store_true",
        help="show policy updates as remove-and-recreate and do them that way (works around "
        "Exchange's Set-AuthenticationPolicy null-reference bug)",
    )
    parser.add_argument(
        "--audit-log",
        type=Path,
        metavar="FILE",
        help="append-only JSON-lines record of every change (default .authpolicy/audit-DATE.jsonl)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=16,
        metavar="N",
        help="most user-write batches in flight at once (default 16; adapts down on throttling)",
    )
    parser.add_argument(
        "--show-users",
        type=show_users_value,
        default=DEFAULT_SHOW_USERS,
        metavar="N|all",
        help=f"users listed per group of user changes in the plan shown (default: "
        f"{DEFAULT_SHOW_USERS})",
    )
    parser.add_argument(
        "--check-users",
        choices=VERIFY_USERS,
        default="sample",
        help="after the writes, re-read the policies, the default and either an even sample of "
        f"up to {USER_SAMPLE} changed users (default) or all of them",
    )
    add_plan_source_arguments(parser)
    from reconciler.fleet.run import add_fleet_arguments

    add_fleet_arguments(parser, out_dir=False)
    parser.add_argument(
        "--plans",
        metavar="DIR",
        help="with --tenants: the folder of saved per-tenant plans (plan --tenants --out-dir)",
    )


# --------------------------------------------------------------------------- planning


MAX_PLAN_BYTES = 64 * 2**20  # DESIGN.md "Saved plans": a plan file is at most 64 MiB


def forced_guards(value: str | None) -> set[str]:
    """The guards `--force[=NAME,...]` overrides: {"all"}, the names given, or none."""
    if value is None:
        return set()
    names = {n.strip() for n in value.split(",") if n.strip()}
    unknown = sorted(names - {"all", *GUARD_NAMES})
    if unknown:
        raise AuthPolicyError(
            f"--force={value}: unknown guard {', '.join(unknown)}; name one of "
            f"{', '.join(GUARD_NAMES)}, or give --force alone to override every guard"
        )
    return names or {"all"}


def read_saved_plan(path: str) -> Plan:
    """A plan file apply (or `tenants combine`) reads: size-capped, UTF-8, plan_from_json."""
    from reconciler.render import plan_from_json

    file = Path(path)
    try:
        if not file.is_file():
            raise AuthPolicyError(f"{path} is not a regular file: pass the PLAN.json plan wrote")
        with file.open("rb") as handle:  # never more than the cap: /dev/zero must not hang
            data = handle.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise AuthPolicyError(f"cannot read plan file {path}: {exc.strerror}") from None
    if len(data) > MAX_PLAN_BYTES:
        raise AuthPolicyError(
            f"{path} is larger than {MAX_PLAN_BYTES // 2**20} MiB: not a plan file authpolicy wrote"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuthPolicyError(
            f"{path} is not UTF-8 (byte {exc.start}): not a plan file authpolicy wrote"
        ) from None
    try:
        return plan_from_json(text, path)
    except AuthPolicyError:
        raise
    except RecursionError:
        raise AuthPolicyError(
            f"{path} is nested too deeply: not a plan file authpolicy wrote"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthPolicyError(f"{path} is not a plan file authpolicy wrote: {exc}") from None


def _read_and_plan(args: argparse.Namespace) -> PlanRun:
    """Load the config, open the tenant, read it and plan: the same path `plan` takes."""
    progress = _reading_progress if sys.stderr.isatty() else None
    run = plan_from_args(args, progress=progress, verb="apply")
    if progress is not None:
        sys.stderr.write("\n")
    return run


def _reading_progress(read: int, total: int | None) -> None:
    of = f" of {total:,}" if total else ""
    sys.stderr.write(f"\rreading the tenant: {read:,}{of} objects")
    sys.stderr.flush()


# --------------------------------------------------------------------------- output


def _render(plan: Plan, color: bool, show_users: int | None = 20) -> str:
    from reconciler.render import render_plan

    return render_plan(plan, "text", color=color, show_users=show_users)


def _confirm(plan: Plan) -> bool:
    total = len(plan.changes)
    sys.stdout.write(
        f"\nApply these {total} change(s) to {plan.tenant}?\n"
        "  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    )
    sys.stdout.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip() == "yes"


def _is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _summary(report: ApplyReport, audit_path: Path, verified: str = "") -> list[str]:
    counts = report.counts
    lines: list[str] = []
    for outcome in report.failed[:SHOW_FAILURES]:
        lines.append(f"  failed: {describe_change(outcome.change)}: {outcome.message}")
    if len(report.failed) > SHOW_FAILURES:
        lines.append(f"  ... and {len(report.failed) - SHOW_FAILURES} more failures (audit log)")
    skipped = [o for o in report.outcomes if o.status == "skipped" and not report.interrupted]
    if report.audit_error is not None:
        lines.append(
            f"Stopped: the audit log could not be written before a write ({report.audit_error});"
            f" nothing more was sent, {len(skipped)} change(s) not sent. Fix the audit log "
            "(--audit-log) and run apply again."
        )
        skipped = [o for o in skipped if not o.message.startswith("not sent:")]
    elif report.denied is not None:
        # One line for the refusal, not one per write that was never sent.
        lines.append(
            f"Stopped at the first refused write: {report.denied}; {len(skipped)} change(s) "
            "not sent"
        )
        skipped = [o for o in skipped if not o.message.startswith("not sent:")]
    for outcome in skipped[:SHOW_FAILURES]:
        lines.append(f"  skipped: {describe_change(outcome.change)}: {outcome.message}")
    # Objects deleted by someone else since the plan: not a failure, but the admin should see
    # which ones (the plan showed a change for them that did not happen).
    missing = [o for o in report.outcomes if o.status == "not_found"]
    for outcome in missing[:SHOW_FAILURES]:
        lines.append(f"  not found: {describe_change(outcome.change)}: {outcome.message}")
    for problem in report.problems[:SHOW_FAILURES]:
        lines.append(f"  does not hold: {problem}")
    not_started = sum(1 for o in report.outcomes if o.message == INTERRUPTED)
    head = (
        f"{counts['applied']} applied, {counts['failed']} failed, "
        f"{counts['skipped'] - not_started} skipped, {counts['not_found']} not found "
        f"({report.retries} retries)"
    )
    if report.interrupted:
        done = len(report.outcomes) - not_started
        lines.append(
            f"Apply interrupted: {done} change(s) done ({head}), {not_started} not started. "
            "Run apply again to finish."
        )
    elif report.ok:
        lines.append(f"Apply complete: {head}.")
    else:
        lines.append(f"Apply finished with errors: {head}. Run apply again to retry.")
    if verified:
        lines.append(verified)
    lines.append(f"Audit log: {audit_path}")
    return lines


@contextmanager
def _stop_on_ctrl_c(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C: stop scheduling, let in-flight calls finish. Second: abort at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        sys.stderr.write(
            "\nStopping: waiting for the calls in flight to finish (Ctrl-C again to abort now)\n"
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _not_written_line(changes: tuple[Any, ...]) -> str:
    first = ", ".join(describe_change(c) for c in changes[:3])
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return (
        f"Not in the saved plan, so not written: {len(changes)} change(s) the tenant needs now "
        f"({first}{more}). Run plan again to review them."
    )


def _ci_run() -> str | None:
    """The CI run this apply belongs to, when the environment says (GitHub, Azure, GitLab)."""
    env = os.environ
    if env.get("GITHUB_RUN_ID"):
        attempt = env.get("GITHUB_RUN_ATTEMPT")
        run = f"github:{env.get('GITHUB_REPOSITORY', '')}/{env['GITHUB_RUN_ID']}"
        return f"{run}/{attempt}" if attempt else run
    if env.get("BUILD_BUILDID"):
        return f"azure-devops:{env.get('SYSTEM_TEAMPROJECT', '')}/{env['BUILD_BUILDID']}"
    if env.get("CI_PIPELINE_ID"):
        return f"gitlab:{env.get('CI_PROJECT_PATH', '')}/{env['CI_PIPELINE_ID']}"
    return None


def _audit_context(tenant: Any, forced: set[str], revoke: bool) -> dict[str, Any]:
    """What every audit record of this run carries besides tenant and fingerprint."""
    settings = getattr(getattr(tenant, "client", None), "settings", None)
    return {
        "run_id": str(uuid.uuid4()),
        "client_id": getattr(settings, "client_id", None),
        "ci_run": _ci_run(),
        "forced": sorted(forced),
        "revoke_sessions": revoke,
    }


def _open_audit(path: Path, plan: Plan, context: dict[str, Any]) -> AuditLog:
    try:
        return AuditLog(path, tenant=plan.tenant, fingerprint=plan.fingerprint, context=context)
    except OSError as exc:
        raise AuthPolicyError(f"cannot open audit log {path}: {exc.strerror}") from None


def _reconcile_earlier_run(path: Path, plan: Plan, snapshot: Any, context: dict[str, Any]) -> None:
    """Intents an earlier, killed apply left without an outcome: read back, recorded, said."""
    pending = unfinished_intents(path)
    if not pending:
        return
    records = reconcile(pending, snapshot)
    with _open_audit(path, plan, context) as audit:
        for record in records:
            audit.record(record)
    sys.stdout.write(reconcile_summary(records) + "\n")


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    if args.tenants:
        from reconciler.fleet.command import run_apply

        return run_apply(args)
    with contextlib.ExitStack() as held:
        return _run(args, held)


def _run(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    from reconciler.apply.lock import tenant_lock

    if (
        args.force not in (None, "all")
        and args.plan_file is None
        and not set(args.force.split(",")) <= set(GUARD_NAMES)
        and os.path.exists(args.force)
    ):
        # `apply --force PLAN.json`: argparse gave the plan file to --force's optional value.
        args.plan_file, args.force = args.force, "all"

    saved = read_saved_plan(args.plan_file) if args.plan_file else None
    if saved is not None and args.config is None and saved.config_file:
        args.config = saved.config_file  # the file the reviewed plan was made from
    if args.max_concurrency < 1:
        raise AuthPolicyError("--max-concurrency must be at least 1")
    saved_replaces = saved is not None and any(isinstance(c, PolicyReplace) for c in saved.changes)
    if saved_replaces and not args.allow_replace:
        raise AuthPolicyError(
            f"{args.plan_file} removes and recreates policies (replace); pass --allow-replace "
            "to apply it"
        )

    desired, tenant, snapshot, plan = _read_and_plan(args)
    # One apply per tenant on this machine, from before anything is written until after the
    # verification (a second one refuses with one line).
    held.enter_context(tenant_lock(str(tenant.name)))
    if (saved is None and args.allow_replace) or saved_replaces:
        plan = plan_with_replaces(plan, snapshot)

    not_written: tuple[Any, ...] = ()
    if saved is not None:
        check = check_saved_plan(saved, plan)
        if check.reasons:
            raise StalePlanError(
                f"{args.plan_file} is stale, refusing to apply: {'; '.join(check.reasons)}. "
                "Run plan again and review the new plan."
            )
        # Exactly the saved changes, as the fresh plan has them; fresh ones the saved plan lacks
        # (a user who joined since) are not written. Guards, warnings and counts come from the
        # fresh read, never from the file: a saved file cannot talk apply past a guard.
        not_written = check.not_in_saved
        plan = dataclasses.replace(plan, changes=check.to_write)
    if saved is not None or any(isinstance(c, PolicyReplace) for c in plan.changes):
        # The guards of exactly what will be written (a replace's re-pointed holders count).
        plan = dataclasses.replace(
            plan, guards=tuple(guards_of(desired, snapshot, plan.changes, plan.relying_after))
        )

    audit_path = args.audit_log or default_audit_path()
    forced = forced_guards(args.force)
    context = _audit_context(tenant, forced, desired.assignments.revoke_sessions)
    _reconcile_earlier_run(audit_path, plan, snapshot, context)

    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    sys.stdout.write(_render(plan, color, args.show_users))
    if not_written:
        sys.stdout.write(_not_written_line(not_written) + "\n")
    if not plan.has_changes:
        return ExitCode.OK

    blocking = [g for g in plan.guards if "all" not in forced and g.name not in forced]
    if blocking:
        for guard in blocking:
            sys.stderr.write(f"blocked: {guard.message}\n")
        names = ",".join(g.name for g in blocking)
        raise GuardError(
            f"{len(blocking)} safety guard(s) block this apply; review the plan and pass "
            f"--force to apply it anyway (or --force={names} to override only these)"
        )
    overridden = [g.name for g in plan.guards]

    if saved is None and not args.auto_approve:
        if not _is_terminal():
            raise AuthPolicyError(
                "refusing to apply without confirmation: not a terminal; pass --auto-approve "
                "(CI) or apply a reviewed plan file (plan --out PLAN.json)"
            )
        if not _confirm(plan):
            sys.stdout.write("Apply cancelled; nothing was changed.\n")
            return ExitCode.ERROR

    stop = threading.Event()
    show_bar = sys.stderr.isatty()
    context["forced"] = overridden if forced else []
    audit = _open_audit(audit_path, plan, context)
    with audit, _stop_on_ctrl_c(stop):
        bar = ProgressBar(_stderr_console()) if show_bar else None
        progress = bar if bar is not None else PhaseLines(sys.stderr)
        with bar if bar is not None else nullcontext():
            report = execute_plan(
                plan,
                tenant,
                revoke_sessions=desired.assignments.revoke_sessions,
                audit=audit,
                allow_replace=args.allow_replace,
                max_concurrency=args.max_concurrency,
                progress=progress,
                stop=stop,
            )
        audit.record(
            {**run_record(report), "forced": overridden, "not_in_saved_plan": len(not_written)}
        )
    verification = Verification()
    if not report.interrupted:
        verification = verify_report(report, tenant, users=args.check_users)
        report.problems = verification.problems
    for line in _summary(report, audit_path, verification.summary()):
        sys.stdout.write(line + "\n")
    if report.interrupted:
        return INTERRUPTED_EXIT
    return ExitCode.OK if report.ok else ExitCode.ERROR


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
