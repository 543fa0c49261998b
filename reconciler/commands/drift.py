"""`authpolicy drift`: the read-only plan for schedules. Exit 2 when the tenant has drifted
from the file (any change pending), 0 when it matches, 1 on errors. Besides the plan's
formats it speaks sarif (code scanning, findings on policies.yaml) and junit."""

from __future__ import annotations

import argparse
import sys

from reconciler.model import ExitCode
from reconciler.plan.pipeline import add_plan_source_arguments, plan_from_args
from reconciler.render.options import (
    FINDING_FORMATS,
    add_render_arguments,
    check_render_arguments,
    write_outputs,
)
from reconciler.tenant.progress import read_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_source_arguments(parser)
    add_render_arguments(parser, findings=True)
    from reconciler.fleet.run import add_fleet_arguments

    add_fleet_arguments(parser)


def run(args: argparse.Namespace) -> int:
    check_render_arguments(args)
    if args.tenants:
        from reconciler.fleet.command import run_planning

        return run_planning(args, "drift")
    with read_progress() as progress:
        run = plan_from_args(args, progress=progress, verb="drift")
    plan = run.plan
    if args.format in FINDING_FORMATS:
        from reconciler.findings.drift import render_drift

        # Always written, even with no drift: an empty SARIF run is what closes old alerts.
        sys.stdout.write(
            render_drift([(None, plan, run.desired)], args.format, mask_users=args.mask_users)
        )
    else:
        write_outputs(plan, args, sys.stdout)
    return ExitCode.CHANGES if plan.has_changes else ExitCode.OK
