"""Emulated tenants for the benchmarks: start, converge to a desired state, inject drift.

Set-up is not measured, so it edits the emulator's tenant state directly (under its lock)
instead of spending minutes of HTTP calls: the measured clients only ever talk HTTPS.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.config import SEED, LatencyModel
from reconciler.emulator import Emulator, EmulatorSettings

BLOCK = "Block Basic Auth"
DEVICES = "SMTP relay devices"
MAILBOX = "UserMailbox"


@contextmanager
def running_emulator(users: int, latency: LatencyModel, **settings: Any) -> Iterator[Emulator]:
    """An emulator of `users` synthetic users with the latency model (and any other settings)."""
    emu = Emulator(
        EmulatorSettings(
            users=users, seed=SEED, save_on_exit=False, **latency.settings(), **settings
        )
    )
    with emu:
        yield emu


def _state(emu: Emulator) -> Any:
    return emu.service.state


def _policy_guid(state: Any, name: str) -> str:
    policy = state.find_policy(name)
    if policy is None:
        raise RuntimeError(f"the synthetic tenant has no policy {name!r}")
    return str(policy["Guid"]).lower()


def mailboxes(emu: Emulator) -> list[dict[str, Any]]:
    """The user mailboxes, in the tenant's order (what the naive loop's Get-Recipient returns)."""
    return [u for u in _state(emu).users if u["RecipientTypeDetails"] == MAILBOX]


def converge_mailboxes(emu: Emulator) -> None:
    """Make the tenant match bench/policies/mailboxes.yaml: "Block Basic Auth" blocks every
    protocol, is the default, and every user mailbox holds it directly."""
    state = _state(emu)
    with state.lock:
        block = _policy_guid(state, BLOCK)
        policy = state.policies[block]
        for key in list(policy):
            if key.startswith("AllowBasicAuth"):
                policy[key] = False
        state.organization["DefaultAuthenticationPolicy"] = block
        for user in state.users:
            if user["RecipientTypeDetails"] == MAILBOX:
                user["_policy"] = block


def converge_smtp(emu: Emulator) -> None:
    """Make the tenant match bench/policies/mailboxes_smtp.yaml too: SMTP AUTH off org-wide,
    set explicitly, and every mailbox following it."""
    state = _state(emu)
    with state.lock:
        state.transport["SmtpClientAuthenticationDisabled"] = True
        for user in state.users:
            user["_smtp_disabled"] = None


def inject_drift(emu: Emulator, count: int, seed: int) -> list[str]:
    """Move `count` random user mailboxes off "Block Basic Auth" (half to no direct policy,
    half to "SMTP relay devices": admin-center edits). Returns their UPNs."""
    state = _state(emu)
    rng = random.Random(seed)
    with state.lock:
        devices = _policy_guid(state, DEVICES)
        chosen = rng.sample(mailboxes(emu), count)
        for index, user in enumerate(chosen):
            user["_policy"] = None if index % 2 == 0 else devices
    return [u["UserPrincipalName"] for u in chosen]


def count_off_policy(emu: Emulator) -> int:
    """User mailboxes that do not hold "Block Basic Auth" directly (0 when converged)."""
    state = _state(emu)
    block = _policy_guid(state, BLOCK)
    return sum(1 for u in mailboxes(emu) if u["_policy"] != block)
