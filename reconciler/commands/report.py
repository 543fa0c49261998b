"""`authpolicy report`: the effective policy of every user and who can still use Basic auth.

Read-only and independent of policies.yaml: it reports the tenant as it is. `-c` is only
read for its `tenant:` (a warning when the connection points elsewhere).
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

from reconciler.model import DEFAULT_SIGN_IN_DAYS, MAX_SIGN_IN_DAYS, ExitCode, SnapshotNeeds
from reconciler.render.options import DEFAULT_SHOW_USERS, show_users_value
from reconciler.report import REPORT_FORMATS, build_report, masked, render_report

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=REPORT_FORMATS, default="text", help="output format (default: text)"
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


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    if args.tenants:
        from reconciler.fleet.verbs import report as fleet_report

        return fleet_report(args, environ)
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
