"""`authpolicy init [DIR]`: a commented starter policies.yaml that validates, and the schema
it references, in DIR (default: the current directory)."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.desired import load_desired_state
from reconciler.desired.starter import write_starter
from reconciler.model import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR", help="where to write")
    parser.add_argument(
        "--force", action="store_true", help="replace an existing policies.yaml with the starter"
    )


def run(args: argparse.Namespace) -> int:
    policies, schema = write_starter(Path(args.directory), force=args.force)
    load_desired_state(str(policies))  # the starter validates (a ConfigError would be a bug)
    print(f"wrote {policies} and {schema}")
    print(
        f"next: edit {policies}, then `authpolicy validate -c {policies}` and `authpolicy doctor`"
    )
    return ExitCode.OK
