"""`authpolicy export`: write a policies.yaml from the live tenant.

The file declares the tenant exactly as it is (`plan` against it shows no changes), so a team
can adopt authpolicy without a big-bang change: export, commit, then edit towards the target.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from reconciler.desired.starter import SCHEMA_NAME, schema_text
from reconciler.errors import AuthPolicyError
from reconciler.export import ExportResult, export_policies_yaml
from reconciler.files import refuse_unless_regular_or_absent
from reconciler.model import ExitCode, SnapshotNeeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="write the policies.yaml here (default: standard output)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite FILE when it already exists"
    )
    from reconciler.fleet.run import add_fleet_arguments
    from reconciler.tenant.connect import add_connection_arguments

    add_connection_arguments(parser)
    add_fleet_arguments(parser)
    parser.add_argument(
        "--base",
        metavar="FILE",
        help="with --tenants: write each tenant's overlay against this base (default: the "
        "inventory's)",
    )


def write_file(path: str, text: str, *, force: bool) -> None:
    """Write atomically (a reader never sees half a file). Refuses to replace an existing
    file without --force: an export must not silently overwrite a hand-written policies.yaml."""
    target = Path(path)
    refuse_unless_regular_or_absent(path, "export")  # never over a link, device or FIFO
    if target.exists() and not force:
        raise AuthPolicyError(f"{path} already exists; use --force to overwrite it")
    directory = target.resolve().parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=".authpolicy-export-", dir=directory)
    except OSError as exc:
        raise AuthPolicyError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # a config file meant for git, not a secret
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise AuthPolicyError(f"cannot write {path}: {exc.strerror}") from None


def summary_lines(result: ExportResult, where: str) -> list[str]:
    """What the admin sees on stderr after an export."""
    lines = [
        f"Exported {result.policies:,} policies, {result.direct_users:,} users with a direct "
        f"policy and {result.default_users:,} without one to {where}."
    ]
    if result.skipped:
        lines.append(
            f"{len(result.skipped):,} item(s) could not be written and are left as they are "
            "(listed at the end of the file):"
        )
        lines += [f"  {line}" for line in result.skipped[:10]]
        if len(result.skipped) > 10:
            lines.append(f"  ... and {len(result.skipped) - 10:,} more")
    for name in result.unlisted:
        lines.append(
            f"warning: the direct holders of {name!r} are not listed: the file would exceed "
            "the size limits of policies.yaml; `unmatched: ignore` leaves them as they are"
        )
    lines.append("Check it with: authpolicy plan -c " + (where if where != "stdout" else "FILE"))
    return lines


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    if args.tenants:
        from reconciler.fleet.verbs import export as fleet_export

        return fleet_export(args, environ)
    from reconciler.tenant.connect import open_tenant

    tenant = open_tenant(args, environ=environ)
    # The SMTP AUTH switches too: the org's and every mailbox's explicit value become rules.
    snapshot = tenant.read_snapshot(SnapshotNeeds(smtp_org=True, mailboxes=True))
    # The initial domain reads better than a GUID in `tenant:`; apply accepts either.
    name = getattr(tenant, "initial_domain", None) or snapshot.tenant
    result = export_policies_yaml(snapshot, tenant_name=name)
    if args.out:
        write_file(args.out, result.text, force=args.force)
        # The file's $schema header names the schema beside it: put it there.
        schema = Path(args.out).parent / SCHEMA_NAME
        if not schema.exists():
            write_file(str(schema), schema_text(), force=False)
    else:
        sys.stdout.write(result.text)
    for line in summary_lines(result, args.out or "stdout"):
        print(line, file=sys.stderr)
    return ExitCode.OK
