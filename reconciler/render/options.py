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


FINDING_FORMATS: tuple[str, ...] = ("sarif", "junit")  # drift only


def add_render_arguments(parser: argparse.ArgumentParser, *, findings: bool = False) -> None:
    """The rendering flags; `findings` adds drift's sarif and junit formats."""
    formats = (*FORMATS, *FINDING_FORMATS) if findings else FORMATS
    parser.add_argument(
        "--format",
        choices=formats,
        default="text",
        help="output format (default: text)"
        + ("; sarif for code scanning, junit for test gates" if findings else ""),
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
    parser.add_argument(
        "--quiet-when-no-changes",
        action="store_true",
        help="write nothing to standard output when there is nothing to change (e.g. so a CI "
        "step posts no comment)",
    )
    parser.add_argument(
        "--job-summary",
        action="store_true",
        help="also append the markdown plan to the CI job summary ($GITHUB_STEP_SUMMARY)",
    )


def write_outputs(plan: Plan, args: argparse.Namespace, stream: TextIO) -> None:
    """The plan on `stream` as the flags ask (nothing with --quiet-when-no-changes and no
    changes), and the markdown appended to $GITHUB_STEP_SUMMARY with --job-summary."""
    if getattr(args, "job_summary", False):
        summary = os.environ.get("GITHUB_STEP_SUMMARY", "")
        if not summary:
            raise AuthPolicyError(
                "--job-summary: GITHUB_STEP_SUMMARY is not set (it is, inside a GitHub Actions "
                "job); leave the flag out elsewhere"
            )
        text = render_plan(plan, "markdown", show_users=args.show_users, mask_users=args.mask_users)
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise AuthPolicyError(f"cannot append to {summary}: {exc.strerror}") from None
    if getattr(args, "quiet_when_no_changes", False) and not plan.has_changes:
        return
    stream.write(render_for(plan, args, stream))


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
