"""`authpolicy demo` (not built yet)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="policies.yaml")


def run(args: argparse.Namespace) -> int:
    print("authpolicy demo: not implemented yet", file=sys.stderr)
    return 1
