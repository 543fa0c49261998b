"""`authpolicy plan`: show the changes that would make the tenant match the file.

Exit codes: 0 no changes (or any plan without --detailed-exitcode), 2 changes pending with
--detailed-exitcode, 3 with --detailed-exitcode when a safety guard would block apply,
1 errors. --out is written first, owner-only, even for a guarded plan, so it can be reviewed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from reconciler.apply.replace import plan_with_replaces
from reconciler.errors import AuthPolicyError
from reconciler.files import refuse_unless_regular_or_absent
from reconciler.model import ExitCode, Plan
from reconciler.plan.pipeline import add_plan_source_arguments, plan_from_args
from reconciler.render import plan_to_json
from reconciler.render.options import add_render_arguments, check_render_arguments, write_outputs
from reconciler.tenant.progress import read_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_source_arguments(parser)
    parser.add_argument(
        "--out", metavar="PLAN.json", help="also save the JSON plan here (for apply PLAN.json)"
    )
    add_render_arguments(parser)
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 3 when a safety guard would block apply",
    )
    parser.add_argument(
        "--allow-replace",
        action="store_true",
        help="show every policy update as a remove-and-recreate (the way around Exchange's "
        "Set-AuthenticationPolicy null-reference bug), so a saved plan can be applied with "
        "'apply PLAN.json --allow-replace'",
    )
    from reconciler.fleet.run import add_fleet_arguments

    add_fleet_arguments(parser)


def write_plan_file(path: str, plan: Plan) -> None:
    """Save the JSON plan atomically with owner-only permissions (0600): it names users."""
    refuse_unless_regular_or_absent(path, "plan")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".authpolicy-plan-", dir=directory)
    except OSError as exc:
        raise AuthPolicyError(f"cannot write the plan to {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp made it 0600
            handle.write(plan_to_json(plan))
        os.replace(temporary, path)
    except OSError as exc:
        os.unlink(temporary)
        raise AuthPolicyError(f"cannot write the plan to {path}: {exc.strerror}") from None


def exit_code_for(plan: Plan, detailed: bool) -> int:
    if not detailed or not plan.has_changes:
        return ExitCode.OK
    return ExitCode.BLOCKED if plan.blocked else ExitCode.CHANGES


def run(args: argparse.Namespace) -> int:
    check_render_arguments(args)
    if args.tenants:
        from reconciler.fleet.command import run_planning

        return run_planning(args, "plan")
    with read_progress() as progress:
        planned = plan_from_args(args, progress=progress)
    plan = planned.plan
    if args.allow_replace:
        # The replace must be in the reviewed plan, holders and all: apply refuses a saved
        # plan whose changes differ from what it would make now.
        plan = plan_with_replaces(plan, planned.snapshot)
    if args.out:
        write_plan_file(args.out, plan)
        print(f"Saved the plan to {args.out} ({plan.fingerprint})", file=sys.stderr)
    write_outputs(plan, args, sys.stdout)
    return exit_code_for(plan, args.detailed_exitcode)
