"""The rendering flags plan and drift share, and how they turn into render_plan arguments."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TextIO

from reconciler.errors import AuthPolicyError
from reconciler.model import Plan
from reconciler.render import FORMATS, render_plan

DEFAULT_SHOW_USERS = 20


def show_users_value(text: str) -> int | None:
    """--show-users: a count, or `all` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'all', got {text!r}")
    return value


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    parser.add_argument(
        "--show-users",
        type=show_users_value,
        default=DEFAULT_SHOW_USERS,
        metavar="N|all",
        help=f"users listed per group of user changes (default: {DEFAULT_SHOW_USERS})",
    )
    parser.add_argument(
        "--mask-users",
        action="store_true",
        help="mask UPNs (a***@contoso.com) in text and markdown, e.g. for public PR comments",
    )
    parser.add_argument("--no-color", action="store_true", help="never colour the text output")


def use_color(args: argparse.Namespace, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour only for text on a terminal, unless --no-color or NO_COLOR (any non-empty value)."""
    if args.format != "text" or args.no_color or environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def check_render_arguments(args: argparse.Namespace) -> None:
    if args.mask_users and args.format == "json":
        raise AuthPolicyError(
            "--mask-users applies to text and markdown; the JSON plan is the plan apply "
            "executes and is never masked"
        )


def render_for(
    plan: Plan,
    args: argparse.Namespace,
    stream: TextIO,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """The plan as the flags ask, for `stream`."""
    return render_plan(
        plan,
        args.format,
        color=use_color(args, stream, environ),
        show_users=args.show_users,
        mask_users=args.mask_users,
    )
