"""The `authpolicy` command line. `main` only parses and dispatches; each verb lives in
`reconciler.commands.<verb>` as `add_arguments(parser)` + `run(args) -> int`.

This is the one place that turns exceptions into messages and exit codes: a user never sees a
traceback (set AUTHPOLICY_DEBUG=1 to get one for a bug report).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from reconciler import __version__
from reconciler.errors import AuthPolicyError, ConfigError
from reconciler.model import ExitCode

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "validate": (
        "reconciler.commands.validate",
        "check policies.yaml; every problem as FILE:LINE:COL",
    ),
    "plan": (
        "reconciler.commands.plan",
        "show the changes that would make the tenant match the file",
    ),
    "apply": ("reconciler.commands.apply", "make exactly the planned changes"),
    "export": ("reconciler.commands.export", "write a policies.yaml from the live tenant"),
    "drift": (
        "reconciler.commands.drift",
        "read-only check for schedules: exit 2 when the tenant drifted",
    ),
    "report": ("reconciler.commands.report", "effective policy and Basic-auth exposure per user"),
    "doctor": (
        "reconciler.commands.doctor",
        "check credentials, token, cloud, the app's role and read access (never writes)",
    ),
    "tenants": (
        "reconciler.fleet.command",
        "many tenants from one repository: `tenants matrix` for CI fan-out, `tenants check`",
    ),
    "init": ("reconciler.commands.init", "write a commented starter policies.yaml and its schema"),
    "schema": ("reconciler.commands.schema", "print the JSON Schema of policies.yaml"),
    "emulator": ("reconciler.commands.emulator", "run the local Exchange Online emulator"),
    "demo": ("reconciler.commands.demo", "embedded emulator: plan, apply, plan again"),
}

log = logging.getLogger("authpolicy")
# Variables whose values are secrets wherever they appear later.
SECRET_VARIABLES = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD")


def chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb an argument list names (the first word that is not an option), or None."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token if token in VERBS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that verb's module is imported and given its arguments
    (the other verbs are listed for --help and usage, nothing of them is loaded), so
    `--version`, `--help` and `validate` start fast."""
    parser = argparse.ArgumentParser(
        prog="authpolicy",
        description="Desired-state reconciler for Exchange Online authentication policies.",
    )
    parser.add_argument("--version", action="version", version=f"authpolicy {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        # No abbreviations: `drift --out` must not quietly mean `--out-dir`.
        verb_parser = sub.add_parser(
            verb, help=help_text, description=help_text, allow_abbrev=False
        )
        if only is not None and verb != only:
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    verb = chosen_verb(arguments)
    # Only the chosen verb's module is imported; with none (--help, --version, a typo),
    # none is.
    parser = build_parser(only=verb or "")
    argv = arguments
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2; our contract says 1
        code = exc.code if isinstance(exc.code, int) else 1
        return ExitCode.ERROR if code == 2 else code
    if not getattr(args, "verb", None):
        parser.print_help(sys.stderr)
        return ExitCode.ERROR
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The redactor knows every secret of the environment before any message is formatted,
    # whichever variable it was put in (a secret pasted into AZURE_TENANT_ID is still one).
    from reconciler.tenant.exo.redact import redact, register_secret

    for name in SECRET_VARIABLES:
        register_secret(os.environ.get(name))
    try:
        return int(args._run(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(problem), file=sys.stderr)
        return exc.exit_code
    except AuthPolicyError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return ExitCode.ERROR
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if os.environ.get("AUTHPOLICY_DEBUG"):
            raise
        print(
            redact(f"internal error: {type(exc).__name__}: {exc}") + " "
            "(set AUTHPOLICY_DEBUG=1 for a traceback and please report it)",
            file=sys.stderr,
        )
        return ExitCode.ERROR


if __name__ == "__main__":
    raise SystemExit(main())
