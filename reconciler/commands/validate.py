"""`authpolicy validate [-c FILE]`: check policies.yaml without touching the tenant.

Exit 0 with a one-line summary when the file is valid; exit 1 with every problem, one per
line as `FILE:LINE:COL: path.to.key: message` (printed by cli.main from the ConfigError).
"""

from __future__ import annotations

import argparse

from reconciler.desired import load_desired_state
from reconciler.model import DesiredState, ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default="policies.yaml",
        metavar="FILE",
        help="the desired-state file (default: policies.yaml)",
    )


def run(args: argparse.Namespace) -> int:
    state = load_desired_state(args.config)  # ConfigError -> cli.main prints each problem
    print(summary(state))
    return ExitCode.OK


def summary(state: DesiredState) -> str:
    """One line saying what the valid file declares."""
    parts = [
        _count(len(state.policies), "policy", "policies"),
        _count(len(state.assignments.rules), "rule", "rules"),
    ]
    if state.remove_policies:
        parts.append(f"{len(state.remove_policies)} to remove")
    if state.manage_default:
        default = state.default_policy
        parts.append(f"default {default!r}" if default else "default cleared")
    return f"{state.source}: OK ({', '.join(parts)})"


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
