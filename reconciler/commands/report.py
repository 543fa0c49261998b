"""`authpolicy report`: the effective policy of every user and who can still use Basic auth.

Read-only and independent of policies.yaml: it reports the tenant as it is. `-c` is only
read for its `tenant:` (a warning when the connection points elsewhere).

`report --baseline [cisa|cis|authpolicy|all]` evaluates the compliance checks instead
(reconciler/baseline): pass, fail or not assessed per check, located at the policies.yaml
line each finding concerns (`-c`, else ./policies.yaml when there is one). Exit 0 when every
check passes (not assessed counts as passing unless --strict), 2 when one fails, 1 on errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import AuthPolicyError
from reconciler.model import (
    DEFAULT_SIGN_IN_DAYS,
    MAX_SIGN_IN_DAYS,
    DesiredState,
    ExitCode,
    SnapshotNeeds,
    TenantSnapshot,
)
from reconciler.render.options import DEFAULT_SHOW_USERS, show_users_value
from reconciler.report import REPORT_FORMATS, build_report, masked, render_report

if TYPE_CHECKING:
    from reconciler.baseline.checks import BaselineResult

log = logging.getLogger(__name__)

BASELINE_CHOICES = ("cisa", "cis", "authpolicy", "all")  # baseline.checks.BASELINE_CHOICES
BASELINE_FORMATS = ("text", "markdown", "json", "sarif", "junit")
ALL_FORMATS = tuple(dict.fromkeys((*REPORT_FORMATS, *BASELINE_FORMATS)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=ALL_FORMATS,
        default="text",
        help="output format (default: text); sarif and junit with --baseline, csv without",
    )
    parser.add_argument(
        "--baseline",
        nargs="?",
        const="all",
        choices=BASELINE_CHOICES,
        metavar="{cisa,cis,authpolicy,all}",
        help="evaluate the compliance checks of a baseline (default when given alone: all), "
        "each with its id; exit 2 when one fails",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="with --baseline: a check that cannot be assessed (e.g. no Graph permission) fails",
    )
    parser.add_argument(
        "--show-users",
        type=show_users_value,
        default=DEFAULT_SHOW_USERS,
        metavar="N|all",
        help=f"users listed per list in text and markdown (default: {DEFAULT_SHOW_USERS}); "
        "json and csv always hold every user",
    )
    parser.add_argument(
        "--mask-users",
        action="store_true",
        help="mask UPNs (a***@contoso.com) in every format, e.g. to attach the report to an issue",
    )
    parser.add_argument(
        "--sign-in-days",
        type=_days,
        default=DEFAULT_SIGN_IN_DAYS,
        metavar="N",
        help=f"read the Entra sign-in log of the last N days, 1-{MAX_SIGN_IN_DAYS} (default: "
        f"{DEFAULT_SIGN_IN_DAYS}; 0: do not read it): who really used Basic auth",
    )
    parser.add_argument(
        "--sign-in-details",
        action="store_true",
        help="markdown: show sign-in times, not only dates (a PR comment shows dates by default)",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="optional policies.yaml, read only to check that its `tenant:` is this tenant",
    )
    from reconciler.fleet.run import add_fleet_arguments
    from reconciler.tenant.connect import add_connection_arguments

    add_connection_arguments(parser)
    add_fleet_arguments(parser)


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 <= days <= MAX_SIGN_IN_DAYS:
        raise argparse.ArgumentTypeError(
            f"{days} is outside 0-{MAX_SIGN_IN_DAYS} (the sign-in log keeps "
            f"{MAX_SIGN_IN_DAYS} days)"
        )
    return days


def _check_tenant(args: argparse.Namespace, tenant: object, snapshot: object) -> None:
    if not args.config:
        return
    from reconciler.desired import load_desired_state
    from reconciler.plan.pipeline import tenant_warning

    if not Path(args.config).exists():
        log.warning("%s not found; the report does not need it", args.config)
        return
    desired = load_desired_state(args.config)
    warning = tenant_warning(desired, tenant, snapshot)  # type: ignore[arg-type]
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)


def check_report_arguments(args: argparse.Namespace) -> None:
    """One line and exit 1 for flags that do not go together."""
    if args.baseline is None:
        if args.format in ("sarif", "junit"):
            raise AuthPolicyError(
                f"--format {args.format} is for --baseline (and drift); add --baseline, or use "
                "text, markdown, json or csv"
            )
        if args.strict:
            raise AuthPolicyError("--strict applies to --baseline; add --baseline or drop it")
    elif args.format == "csv":
        raise AuthPolicyError(
            "--baseline speaks text, markdown, json, sarif and junit; csv is the user list of "
            "the plain report"
        )


def baseline_config(args: argparse.Namespace, fallback: str = "policies.yaml") -> str | None:
    """The policies.yaml findings are located in: -c, else ./policies.yaml when it exists."""
    if args.config:
        return str(args.config)
    return fallback if Path(fallback).is_file() else None


def baseline_needs(args: argparse.Namespace) -> SnapshotNeeds:
    from reconciler.baseline.checks import selected_baselines

    chosen = selected_baselines(args.baseline)
    return SnapshotNeeds(
        smtp_org=True,
        mailboxes=True,
        sign_in_days=(args.sign_in_days or None) if "authpolicy" in chosen else None,
        conditional_access="cis" in chosen,
    )


def evaluate_baseline(
    args: argparse.Namespace,
    snapshot: TenantSnapshot,
    desired: DesiredState | None,
    tenant_name: str,
) -> BaselineResult:
    """The BaselineResult of a snapshot, named by `tenant_name`."""
    from reconciler.baseline.checks import evaluate, selected_baselines

    result = evaluate(
        snapshot,
        desired,
        baselines=selected_baselines(args.baseline),
        mask_users=args.mask_users,
        strict=args.strict,
        made_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return dataclasses.replace(result, tenant=tenant_name)


def _run_baseline(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from reconciler.baseline.render import render_baseline
    from reconciler.desired import load_desired_state
    from reconciler.plan.pipeline import tenant_warning
    from reconciler.tenant.connect import open_tenant

    config = baseline_config(args)
    desired = load_desired_state(config) if config is not None else None
    tenant = open_tenant(args, environ=environ)
    snapshot = tenant.read_snapshot(baseline_needs(args))
    if desired is not None:
        warning = tenant_warning(desired, tenant, snapshot)
        if warning is not None:
            print(f"warning: {warning}", file=sys.stderr)
    name = getattr(tenant, "initial_domain", None) or snapshot.tenant
    outcome = evaluate_baseline(args, snapshot, desired, name)
    sys.stdout.write(render_baseline(outcome, args.format))
    return ExitCode.CHANGES if outcome.any_failed else ExitCode.OK


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    check_report_arguments(args)
    if args.tenants:
        from reconciler.fleet.verbs import report as fleet_report

        return fleet_report(args, environ)
    if args.baseline is not None:
        return _run_baseline(args, environ)
    from reconciler.tenant.connect import open_tenant

    tenant = open_tenant(args, environ=environ)
    made_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    snapshot = tenant.read_snapshot(
        SnapshotNeeds(smtp_org=True, mailboxes=True, sign_in_days=args.sign_in_days or None)
    )
    _check_tenant(args, tenant, snapshot)
    report = dataclasses.replace(build_report(snapshot), made_at=made_at)
    name = getattr(tenant, "initial_domain", None)
    if name:  # the initial domain reads better than the GUID a connection may be set up with
        report = dataclasses.replace(report, tenant=name)
    if args.mask_users:
        report = masked(report)
    sys.stdout.write(
        render_report(
            report,
            args.format,
            show_users=args.show_users,
            sign_in_details=args.sign_in_details,
        )
    )
    return ExitCode.OK
