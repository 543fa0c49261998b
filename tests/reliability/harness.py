"""Shared pieces of the reliability suite: a config that exercises every change kind, planning
against an emulator, running the CLI as a subprocess, and the "no write outside the plan" check.

"No write outside the plan" is checked against the emulator's write log (one entry per
state-changing write, see reconciler/emulator/server.py `_record_write`): every entry must map
to a change of the plan, and no change may take effect twice. Under ambiguous faults (a reset
after the server committed) a resend is allowed only as a no-op, which the emulator counts in
`writes_noop` and never logs as a change.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reconciler.emulator import Emulator
from reconciler.model import (
    DefaultChange,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    SmtpOrgChange,
    UserChange,
)
from reconciler.plan.pipeline import plan_from_args

ROOT = Path(__file__).resolve().parents[2]

# Every change kind against the synthetic tenant: a policy create (the new default), an update
# (the drifted imap/smtp switches of "Block Basic Auth"), a default change, the org SMTP AUTH
# switch, the mailboxes with their own SMTP AUTH setting (reset to follow the org), one user
# change per user (almost everybody moves to the new policy) and a policy delete. Guards are
# opened wide so that no run needs --force.
EVERY_KIND = """\
version: 1
tenant: contoso.onmicrosoft.com
policies:
  Block Basic Auth:
    allow: []
  Block Basic Auth 2026:
    allow: []
  SMTP relay devices:
    allow: [smtp]
remove_policies: [Legacy 2018 Policy]
default_policy: Block Basic Auth 2026
assignments:
  unmatched: ignore
  revoke_sessions: true
  rules:
    - name: break-glass
      policy: null
      match: {users: [breakglass@contoso.com]}
    - name: devices
      policy: SMTP relay devices
      smtp_auth: enabled
      match: {upn: ["scanner-*@contoso.com"]}
    - name: everyone
      policy: Block Basic Auth 2026
      match: all
smtp_auth:
  organization: disabled
  unmatched: organization
safety:
  max_user_changes: 100%
  max_policy_deletes: 1
"""

CONNECTION_PREFIXES = ("AZURE_", "AUTHPOLICY_")


def write_config(directory: Path, text: str = EVERY_KIND) -> Path:
    """policies.yaml in `directory`."""
    path = directory / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def plan_now(env: Mapping[str, str], config: Path) -> Plan:
    """Plan against the tenant `env` connects to (in-process, the same pipeline as the CLI)."""
    return plan_from_args(argparse.Namespace(config=str(config)), environ=env).plan


def subprocess_env(connection: Mapping[str, str], **extra: str) -> dict[str, str]:
    """This process's environment without any connection variable, plus `connection`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONNECTION_PREFIXES)}
    env.update(connection)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def authpolicy_command(*argv: str) -> list[str]:
    """argv of the CLI run as a module of this checkout (what `authpolicy` runs)."""
    return [sys.executable, "-m", "reconciler", *argv]


def run_authpolicy(
    env: Mapping[str, str], *argv: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `authpolicy ARGV` to completion as a subprocess; stdout and stderr captured."""
    return subprocess.run(
        authpolicy_command(*argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --------------------------------------------------------------------------- write accounting


def _change_key(change: Any) -> tuple[str, str]:
    """(cmdlet, identity) that carries out `change`, identity casefolded."""
    if isinstance(change, PolicyCreate):
        return ("New-AuthenticationPolicy", change.policy.casefold())
    if isinstance(change, PolicyUpdate):
        return ("Set-AuthenticationPolicy", change.policy.casefold())
    if isinstance(change, PolicyDelete):
        return ("Remove-AuthenticationPolicy", change.policy.casefold())
    if isinstance(change, DefaultChange):
        return ("Set-OrganizationConfig", "")
    if isinstance(change, UserChange):
        return ("Set-User", change.user_id.casefold())
    if isinstance(change, SmtpOrgChange):
        return ("Set-TransportConfig", "")
    if isinstance(change, MailboxSmtpChange):
        return ("Set-CASMailbox", change.user_id.casefold())
    raise AssertionError(f"unexpected change kind {change!r}")


_CMDLET_OF_KIND = {
    "policy_create": "New-AuthenticationPolicy",
    "policy_update": "Set-AuthenticationPolicy",
    "policy_delete": "Remove-AuthenticationPolicy",
    "default_change": "Set-OrganizationConfig",
    "smtp_org_change": "Set-TransportConfig",
    "mailbox_smtp_change": "Set-CASMailbox",
    "user_assign": "Set-User",
    "user_clear": "Set-User",
}


def intent_key(change: Mapping[str, Any]) -> tuple[str, str]:
    """The (cmdlet, identity) of a change as the audit log writes it (its plan-JSON dict)."""
    kind = str(change["kind"])
    cmdlet = _CMDLET_OF_KIND[kind]
    if kind in ("default_change", "smtp_org_change"):
        return (cmdlet, "")
    if "user_id" in change:
        return (cmdlet, str(change["user_id"]).casefold())
    return (cmdlet, str(change["policy"]).casefold())


def entry_key(entry: Mapping[str, Any], user_ids: Mapping[str, str]) -> tuple[str, str]:
    """The (cmdlet, identity) of one state-changing write the emulator logged."""
    return _entry_key(entry, user_ids)


def _entry_key(entry: Mapping[str, Any], user_ids: Mapping[str, str]) -> tuple[str, str]:
    cmdlet = str(entry["cmdlet"])
    if cmdlet in ("Set-OrganizationConfig", "Set-TransportConfig"):
        return (cmdlet, "")
    identity = str(entry.get("identity") or "").casefold()
    if cmdlet in ("Set-User", "Set-CASMailbox"):
        # The reconciler addresses users by ExternalDirectoryObjectId or UPN; map UPNs back.
        return (cmdlet, user_ids.get(identity, identity))
    return (cmdlet, identity)


def planned_keys(plan: Plan) -> set[tuple[str, str]]:
    """The (cmdlet, identity) of every change of `plan`."""
    return {_change_key(c) for c in plan.changes}


def state_diff_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[tuple[str, str]]:
    """What differs between two emulator states, as the (cmdlet, identity) that would do it.

    Independent of any log: compares the tenant objects themselves.
    """
    keys: set[tuple[str, str]] = set()
    old_users = {u["ExternalDirectoryObjectId"].casefold(): u for u in before["users"]}
    for user in after["users"]:
        external = user["ExternalDirectoryObjectId"].casefold()
        old = old_users.pop(external, None)
        if old is None or any(
            old.get(k) != user.get(k) for k in ("_policy", "StsRefreshTokensValidFrom")
        ):
            keys.add(("Set-User", external))
        if old is not None and old.get("_smtp_disabled") != user.get("_smtp_disabled"):
            keys.add(("Set-CASMailbox", external))
    keys.update(("Remove-User", external) for external in old_users)
    old_policies = {p["Guid"].casefold(): p for p in before["policies"]}
    new_policies = {p["Guid"].casefold(): p for p in after["policies"]}
    for guid, policy in new_policies.items():
        old = old_policies.get(guid)
        if old is None:
            keys.add(("New-AuthenticationPolicy", policy["Name"].casefold()))
        elif any(old[k] != policy[k] for k in policy if k.startswith("AllowBasicAuth")):
            keys.add(("Set-AuthenticationPolicy", policy["Name"].casefold()))
    for guid, policy in old_policies.items():
        if guid not in new_policies:
            keys.add(("Remove-AuthenticationPolicy", policy["Name"].casefold()))
    smtp = "SmtpClientAuthenticationDisabled"
    if before["transport"].get(smtp) != after["transport"].get(smtp):
        keys.add(("Set-TransportConfig", ""))
    default = "DefaultAuthenticationPolicy"
    if (before["organization"].get(default) or "").casefold() != (
        after["organization"].get(default) or ""
    ).casefold():
        keys.add(("Set-OrganizationConfig", ""))
    return keys


def writes_outside_plan(
    plan: Plan, write_log: Iterable[Mapping[str, Any]], upn_to_id: Mapping[str, str]
) -> list[str]:
    """Problems with the writes the emulator logged as state-changing, against `plan`.

    Returns one line per write that no change of the plan explains and per change that took
    effect more than once; an empty list means every state-changing write was planned, once.
    """
    if any(isinstance(c, PolicyReplace) for c in plan.changes):
        raise AssertionError("replace plans are checked by tests/apply, not here")
    planned = Counter(_change_key(c) for c in plan.changes)
    seen: Counter[tuple[str, str]] = Counter()
    problems: list[str] = []
    for entry in write_log:
        key = _entry_key(entry, upn_to_id)
        seen[key] += 1
        if key not in planned:
            problems.append(f"unplanned write: {entry['cmdlet']} {entry.get('identity')!r}")
        elif seen[key] > planned[key]:
            what = f"{entry['cmdlet']} {entry.get('identity')!r}"
            problems.append(f"written {seen[key]} times: {what}")
    return problems


def upn_index(emu: Emulator) -> dict[str, str]:
    """casefolded UPN / name / Guid -> casefolded ExternalDirectoryObjectId for every user."""
    return upn_index_of(emu.dump_state())


def upn_index_of(state: Mapping[str, Any]) -> dict[str, str]:
    """upn_index of an emulator state dict (e.g. a state file)."""
    index: dict[str, str] = {}
    for user in state["users"]:
        external = str(user["ExternalDirectoryObjectId"]).casefold()
        for key in ("UserPrincipalName", "Name", "Guid", "ExternalDirectoryObjectId"):
            value = user.get(key)
            if isinstance(value, str):
                index[value.casefold()] = external
    return index


def assert_converged_within_plan(
    emu: Emulator, config: Path, plan: Plan, before: Mapping[str, Any]
) -> None:
    """The promise of apply under faults, checked three ways: the emulator logged exactly one
    state-changing write per planned change and none other; the tenant differs from `before`
    (its state when `plan` was made) in exactly the planned objects; a new plan is empty."""
    log = emu.write_log()
    assert writes_outside_plan(plan, log, upn_index(emu)) == []
    assert len(log) == len(plan.changes)
    assert state_diff_keys(before, emu.dump_state()) == planned_keys(plan)
    again = plan_now(emu.connection_env("writer"), config)
    assert again.changes == (), [type(c).__name__ for c in again.changes[:5]]
