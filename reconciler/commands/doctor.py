"""`authpolicy doctor`: check the credentials, the token, the cloud, the app's Exchange role,
read access and Graph evidence access, one line each with the fix; exit 1 when one fails.
doctor never writes to the tenant."""

from __future__ import annotations

import argparse

from reconciler.model import ExitCode
from reconciler.tenant.connect import add_connection_arguments
from reconciler.tenant.doctor import run_checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    from reconciler.fleet.run import add_fleet_arguments

    add_fleet_arguments(parser, out_dir=False)


def run(args: argparse.Namespace) -> int:
    if args.tenants:
        from reconciler.fleet.verbs import doctor

        return doctor(args)
    checks = run_checks(args)
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == "FAIL"]
    if failed:
        print(f"doctor: {len(failed)} check(s) failed ({', '.join(failed)}); fix them first")
        return ExitCode.ERROR
    warned = sum(c.status == "warn" for c in checks)
    print(f"doctor: ready ({len(checks)} checks, {warned} warning(s)); nothing was written")
    return ExitCode.OK
