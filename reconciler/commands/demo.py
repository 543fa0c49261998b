"""`authpolicy demo`: the five-minute tour, against an emulated tenant, in under a minute.

It starts the embedded Exchange Online emulator with a realistic 2,000-user tenant that has
drifted (an admin-center edit of the default policy, a user-less legacy policy, new users with
no direct policy, device accounts on the wrong policy), then runs the real commands through the
real CLI, connected the way a user connects (environment variables, HTTPS, a trusted CA):

    authpolicy plan   -c policies.yaml
    authpolicy apply  -c policies.yaml --auto-approve
    authpolicy plan   -c policies.yaml --detailed-exitcode     (expects: no changes)
    authpolicy report

Nothing outside a temporary directory is touched. Exit 0 only when the second plan is empty.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from reconciler.desired.starter import write_starter
from reconciler.errors import AuthPolicyError
from reconciler.model import PROTOCOL_NAMES, ExitCode

# Connection variables the demo replaces while it runs, so a real tenant configured in the
# caller's shell can never be reached by mistake.
CONNECTION_VARIABLES = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AUTHPOLICY_CLOUD",
    "AUTHPOLICY_ENDPOINT",
    "AUTHPOLICY_CA_BUNDLE",
    "AUTHPOLICY_TRUSTED_HOSTS",
    "AUTHPOLICY_TODAY",
)
# The date the demo's plans are made for (AUTHPOLICY_TODAY, honoured against the emulator
# only): its expiring exception is always two weeks away, whatever today is.
DEMO_DATE = "2026-12-27"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE",
        help="the desired state to plan and apply (default: ./policies.yaml, else the sample "
        "shipped with authpolicy)",
    )
    parser.add_argument(
        "--users", type=int, default=2000, metavar="N", help="users in the emulated tenant"
    )
    parser.add_argument("--seed", type=int, default=7, metavar="N", help="tenant generator seed")


@contextmanager
def connected_to(env: Mapping[str, str]) -> Iterator[None]:
    """Set the emulator's connection variables for the duration, then restore the caller's."""
    saved = {key: os.environ.get(key) for key in CONNECTION_VARIABLES}
    for key in CONNECTION_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(title: str, argv: list[str]) -> int:
    """Run one real `authpolicy` command in-process, showing it the way a user types it."""
    from reconciler import cli

    _say()
    _say(f"==> {title}")
    _say(f"$ authpolicy {shlex.join(argv)}")
    sys.stderr.flush()
    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def describe_drift() -> list[str]:
    """A few facts about the emulated tenant, read from it (the way `report` reads it)."""
    from reconciler.cli import build_parser
    from reconciler.model import SnapshotNeeds
    from reconciler.tenant.connect import open_tenant

    snapshot = open_tenant(build_parser().parse_args(["report"])).read_snapshot(
        SnapshotNeeds(smtp_org=True, mailboxes=True)
    )
    default = snapshot.policy(snapshot.default_policy)
    held = {u.policy.casefold() for u in snapshot.users if u.policy is not None}
    facts: list[str] = []
    if default is not None and default.allow:
        allowed = ", ".join(p for p in PROTOCOL_NAMES if p in default.allow)
        facts.append(
            f'the default policy "{default.name}" allows Basic auth for {allowed}\n'
            "    (a click on the admin center's Modern authentication page edits the default)"
        )
    for policy in snapshot.policies:
        if policy.name.casefold() not in held and policy is not default:
            facts.append(
                f'"{policy.name}" is held by nobody and allows '
                f"{len(policy.allow)} of the 12 protocols"
            )
    without = sum(1 for u in snapshot.users if u.policy is None)
    if without:
        facts.append(f"{without:,} users have no direct policy of their own")
    if snapshot.smtp_org is None:
        facts.append(
            "the org-wide SMTP AUTH switch shows no value: Microsoft's default-off decides,\n"
            "    and nobody can read from the API what it is"
        )
    enabled = sum(1 for u in snapshot.users if u.smtp_auth == "enabled")
    if enabled:
        facts.append(f"{enabled:,} mailboxes have SMTP AUTH turned on by hand (Set-CASMailbox)")
    facts.append("and a few accounts hold the wrong policy: the plan names them")
    return facts


EVIDENCE_BLOCK = """
# Evidence before blocking: read who really used Basic auth (Entra sign-in log, Microsoft Graph).
evidence:
  sign_in_logs: {days: 30}
"""
GUARD_LINE = (
    "  max_active_users_blocked: 0          # users a plan may cut off from Basic auth they "
    "used in the window\n"
)
EXCEPTION_POLICY = "  IMAP until migration:\n    allow: [imap]\n"
EXCEPTION_RULE = """- name: imap-migration
  policy: IMAP until migration
  owner: it-mail@contoso.com
  reason: mail clients still on IMAP with Basic auth until the Outlook rollout
  expires: 2027-01-31
  match: {{users: [{users}]}}"""


def with_evidence_guard(text: str) -> str:
    """policies.yaml text with the sign-in evidence and its guard turned on (kept if present)."""
    if "\nevidence:" not in text:
        text = text.rstrip("\n") + "\n" + EVIDENCE_BLOCK
    if "max_active_users_blocked" not in text:
        if "\nsafety:\n" in text:
            text = text.replace("\nsafety:\n", "\nsafety:\n" + GUARD_LINE, 1)
        else:
            text += "safety:\n" + GUARD_LINE
    return text


def with_imap_exception(text: str, users: list[str]) -> str | None:
    """The text with an IMAP exception rule (first) for `users`; None without the anchors."""
    if "\npolicies:\n" not in text or "\n  rules:\n" not in text:
        return None
    rule = "".join(
        f"    {line}\n" for line in EXCEPTION_RULE.format(users=", ".join(users)).splitlines()
    )
    text = text.replace("\npolicies:\n", "\npolicies:\n" + EXCEPTION_POLICY, 1)
    return text.replace("\n  rules:\n", "\n  rules:\n" + rule, 1)


def _imap_users() -> list[str]:
    """Who used IMAP with Basic auth in the window: the report's own reading of the log."""
    from reconciler.cli import build_parser
    from reconciler.model import SnapshotNeeds
    from reconciler.report import build_report
    from reconciler.tenant.connect import open_tenant

    snapshot = open_tenant(build_parser().parse_args(["report"])).read_snapshot(
        SnapshotNeeds(smtp_org=True, mailboxes=True, sign_in_days=30)
    )
    return sorted(u.upn for u in build_report(snapshot).active if "imap" in u.used)


def run(args: argparse.Namespace) -> int:

    config = Path(args.config or "policies.yaml")
    packaged = args.config is None and not config.is_file()
    if not packaged and not config.is_file():
        raise AuthPolicyError(f"{args.config} not found in {Path.cwd()}: check the path")
    if args.users < 1:
        raise AuthPolicyError(f"--users must be 1 or more, got {args.users}")
    started = time.monotonic()
    home = Path.cwd()
    config = config.resolve() if not packaged else config
    try:
        return _run(args, config, packaged, started)
    finally:
        os.chdir(home)


def _run(args: argparse.Namespace, config: Path, packaged: bool, started: float) -> int:
    from reconciler.emulator import Emulator, EmulatorSettings

    with tempfile.TemporaryDirectory(prefix="authpolicy-demo-") as temporary:
        workdir = Path(temporary)
        if packaged:
            # Not in the repository (e.g. an installed wheel): the sample tenant's file ships
            # in the package, with its schema beside it.
            config = write_starter(workdir, sample=True)[0]
        _say(
            f"Starting an emulated Exchange Online tenant with {args.users:,} users "
            "(contoso.onmicrosoft.com)..."
        )
        settings = EmulatorSettings(
            users=args.users, seed=args.seed, state_dir=workdir / "emulator"
        )
        emulator = Emulator(settings)
        try:
            emulator.start()
        except OSError as exc:  # e.g. no loopback, no free port, unwritable temp dir
            raise AuthPolicyError(f"cannot start the emulated tenant: {exc}") from None
        env = {**emulator.connection_env(app="writer"), "AUTHPOLICY_TODAY": DEMO_DATE}
        with emulator as emu, connected_to(env):
            _say(f"It listens on {emu.endpoint} with its own CA; authpolicy reaches it over HTTPS")
            _say("exactly as it reaches Exchange Online (AUTHPOLICY_ENDPOINT, AZURE_* variables).")
            _say()
            _say("The tenant has drifted the way real tenants do:")
            for line in describe_drift():
                _say(f"  - {line}")
            guarded = workdir / "policies.yaml"
            text = config.read_text(encoding="utf-8")
            guarded.write_text(with_evidence_guard(text), encoding="utf-8")
            label = args.config or "policies.yaml"
            _say(f"{label} says how it should be; the demo adds the evidence guard to a copy")
            _say("(evidence.sign_in_logs: who really used Basic auth, from the Entra sign-in log;")
            _say("safety.max_active_users_blocked: 0). Let's see what authpolicy makes of it.")
            os.chdir(workdir)  # the commands below read ./policies.yaml, as a user's would
            code = _step("Plan: what would change, and who would it break?", ["plan"])
            if code != ExitCode.OK:
                _say(f"\nThe plan failed (exit {code}); the demo stops here.")
                return ExitCode.ERROR
            audit = "audit.jsonl"
            code = _step(
                "Apply: the guard refuses to block users who still use Basic auth",
                ["apply", "--auto-approve", "--audit-log", audit],
            )
            if code != ExitCode.BLOCKED:
                _say(f"\nApply was expected to be blocked (exit 3), got {code}; stopping here.")
                return ExitCode.ERROR
            active = _imap_users()
            fixed = with_imap_exception(guarded.read_text(encoding="utf-8"), active)
            if fixed is None:
                _say("\nThis policies.yaml has no `policies:` or `rules:` to add the exception to.")
                return ExitCode.ERROR
            guarded.write_text(fixed, encoding="utf-8")
            _say()
            _say(f"The fix: an exception for the {len(active)} IMAP users, with an owner and an")
            _say("expiry, so it cannot quietly become permanent (added to policies.yaml):")
            for line in EXCEPTION_RULE.format(users=", ".join(active)).splitlines():
                _say(f"    {line}")

            code = _step("Plan with the fixed file", ["plan"])
            if code != ExitCode.OK:
                _say(f"\nThe plan failed (exit {code}); the demo stops here.")
                return ExitCode.ERROR
            code = _step(
                "Apply: make exactly those changes",
                ["apply", "--auto-approve", "--audit-log", audit],
            )
            if code != ExitCode.OK:
                _say(f"\nApply did not finish (exit {code}); the demo stops here.")
                return ExitCode.ERROR

            code = _step(
                "Plan again: the tenant now matches the file",
                ["plan", "--detailed-exitcode"],
            )
            converged = code == ExitCode.OK

            _step("Report: who can still use Basic auth, and for what?", ["report"])
            _step(
                "Baseline: the controls an auditor checks (CISA, CIS and ours; exit 2 on a fail)",
                ["report", "--baseline"],
            )

        elapsed = time.monotonic() - started
        _say()
        if converged:
            _say(
                f"Done in {elapsed:.1f} s: planned, applied, verified, reported, checked against "
                "the baselines."
            )
        else:
            _say(f"The second plan was not empty (exit {code}) after {elapsed:.1f} s.")
        _say("Next: docs/gitops.md (pull-request plans, reviewed applies, nightly drift) and")
        _say("`authpolicy emulator serve` to try every command by hand.")
    return ExitCode.OK if converged else ExitCode.ERROR
