"""SIGKILL through a replace (`apply --allow-replace`) of a policy that 528 users and the
organization default hold: at 24 points spread over the whole replace, then a rerun.

The replace keeps its holders on a holding policy with the same protection while the policy is
removed and created again, so at every kill point each holder, and the default, still names a
policy that exists and blocks at least what the original blocked; the rerun finds the holding
policy (the tenant itself remembers) and finishes the replace first; and every write the
emulator logged is one the replace or its resume explains (heavy: `make test-reliability`).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator import Emulator
from reconciler.model import holding_name
from tests.reliability.harness import (
    authpolicy_command,
    run_authpolicy,
    subprocess_env,
    upn_index,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

POLICY = "Block Basic Auth"
HOLDING = holding_name(POLICY)
CONFIG = f"""\
version: 1
policies:
  {POLICY}:
    allow: []
default_policy: {POLICY}
"""
TRIALS = 24


def _policy_names(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["Guid"].lower(): p for p in state["policies"]}


def _protected(state: dict[str, Any], holders: set[str], blocked: set[str]) -> list[str]:
    """Holders (and the default) that name no existing policy, or one that allows more than
    the original blocked: empty when nobody lost the policy's protection."""
    policies = _policy_names(state)
    problems = []

    def check(who: str, guid: str | None) -> None:
        policy = policies.get((guid or "").lower())
        if policy is None:
            problems.append(f"{who}: no policy")
        elif policy["Name"] not in (POLICY, HOLDING):
            problems.append(f"{who}: on {policy['Name']}")
        else:
            allowed = {k for k, v in policy.items() if k.startswith("AllowBasicAuth") and v}
            if allowed & blocked:
                problems.append(f"{who}: {policy['Name']} allows {sorted(allowed & blocked)}")

    for user in state["users"]:
        if user["UserPrincipalName"] in holders:
            check(user["UserPrincipalName"], user.get("_policy"))
    check("the default", state["organization"].get("DefaultAuthenticationPolicy"))
    return problems


@pytest.mark.parametrize("emu", [600], indirect=True)
def test_sigkill_through_a_replace_never_leaves_a_holder_unprotected(
    emu: Emulator, tmp_path: Path
) -> None:
    config = tmp_path / "policies.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    env = subprocess_env(emu.connection_env("writer"))
    state = emu.dump_state()
    original = next(p for p in state["policies"] if p["Name"] == POLICY)
    guid = original["Guid"].lower()
    holders = {
        u["UserPrincipalName"] for u in state["users"] if (u.get("_policy") or "").lower() == guid
    }
    assert (
        len(holders) == 528 and state["organization"]["DefaultAuthenticationPolicy"].lower() == guid
    )
    blocked = {k for k, v in original.items() if k.startswith("AllowBasicAuth") and not v}
    # 1 holding create, 528 moves, the default, remove, create, 528 moves back, the default,
    # release: kill after n of them, n spread from the first write to past the last.
    total = 2 * len(holders) + 6
    points = [int(total * (k + 0.5) / TRIALS) for k in range(TRIALS)]
    trials = []
    for where in points:
        emu.reset_state()
        emu.reset_stats()
        audit = tmp_path / f"audit-{where}.jsonl"
        proc = subprocess.Popen(
            authpolicy_command(
                "apply", "-c", str(config), "--auto-approve", "--force", "--allow-replace",
                "--audit-log", str(audit),
            ),
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        while proc.poll() is None and emu.stats()["writes_changed_state"] < where:
            time.sleep(0.001)
        proc.kill()
        proc.wait(timeout=30)
        at_kill = emu.dump_state()
        killed_after = emu.stats()["writes_changed_state"]
        assert _protected(at_kill, holders, blocked) == [], where
        on_holding = any(p["Name"] == HOLDING for p in at_kill["policies"])

        rerun = run_authpolicy(
            env, "apply", "-c", str(config), "--auto-approve", "--force", "--allow-replace",
            "--audit-log", str(audit),
        )  # fmt: skip
        assert rerun.returncode == 0, (where, rerun.stdout[-1500:], rerun.stderr[-1500:])
        if on_holding:
            assert "an earlier replace of policy" in rerun.stdout, where
        final = emu.dump_state()
        names = {p["Name"] for p in final["policies"]}
        assert HOLDING not in names and POLICY in names
        now = next(p for p in final["policies"] if p["Name"] == POLICY)
        assert not any(v for k, v in now.items() if k.startswith("AllowBasicAuth"))
        guid_now = now["Guid"].lower()
        back = {
            u["UserPrincipalName"]
            for u in final["users"]
            if (u.get("_policy") or "").lower() == guid_now
        }
        assert back == holders, where
        assert final["organization"]["DefaultAuthenticationPolicy"].lower() == guid_now
        # Every write is the replace's or the resume's: the holding policy and the policy,
        # the holders, the default; nothing else was touched.
        index = upn_index(emu)
        ids = {index[u.casefold()] for u in holders}
        for entry in emu.write_log():
            cmdlet, identity = entry["cmdlet"], str(entry.get("identity") or "").casefold()
            if cmdlet == "Set-User":
                assert index.get(identity, identity) in ids, entry
            elif cmdlet in ("New-AuthenticationPolicy", "Remove-AuthenticationPolicy"):
                assert identity in (POLICY.casefold(), HOLDING.casefold()), entry
            else:
                assert cmdlet in ("Set-OrganizationConfig", "Set-AuthenticationPolicy"), entry
        again = run_authpolicy(env, "plan", "-c", str(config), "--detailed-exitcode")
        assert again.returncode == 0, (where, again.stdout[-1500:])
        trials.append({"kill_after_writes": killed_after, "holding_left": on_holding})
    print("\nreplace SIGKILL trials:\n" + "\n".join(json.dumps(t) for t in trials))
    # The kill points really spread over the replace: some before the remove, some between
    # the remove and the recreate or during the moves back.
    assert sum(t["holding_left"] for t in trials) >= TRIALS // 2
