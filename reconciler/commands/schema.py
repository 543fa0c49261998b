"""`authpolicy schema`: print the JSON Schema of policies.yaml (draft 2020-12)."""

from __future__ import annotations

import argparse
import sys

from reconciler.desired.starter import schema_text
from reconciler.model import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments: redirect the output where you need it (`> policies.schema.json`)."""


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return ExitCode.OK
