"""Synthetic Entra sign-ins, consistent with the tenant's users (the Graph room serves them).

Only what the real log would hold: an authentication policy rejects Basic auth before Entra
sees a password (round2-facts.md §2), so a successful or failed Basic sign-in is made only for
a user whose effective policy allows that protocol now (and, for Authenticated SMTP, whose
mailbox has SMTP AUTH on). The story, from the tenant as it is when the emulator starts:

* device accounts (scanner-NN) send with Authenticated SMTP every `scanner_minutes`;
* a few ordinary users read mail with IMAP4 a few times a day, the last use a day or so ago;
* some password-spray failures on IMAP4 against users whose policy still allows it;
* one "Other clients" sign-in (a legacy client Entra cannot name);
* modern sign-ins (Browser, Mobile Apps and Desktop clients) the legacy filter must leave out;
* `extra` more successful legacy sign-ins spread over the users that may make them (benchmarks).

Deterministic: the same tenant, seed and `now` give the same events, newest first.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any

SWITCH = {
    "Authenticated SMTP": "AllowBasicAuthSmtp",
    "IMAP4": "AllowBasicAuthImap",
    "POP3": "AllowBasicAuthPop",
}
BAD_PASSWORD = 50126  # Entra: invalid username or password
MODERN_APPS = ("Browser", "Mobile Apps and Desktop clients")
EXTRA_USERS = 2000  # the `extra` events come from at most this many users (busy mailboxes)


@dataclass(frozen=True, slots=True)
class SignIn:
    """One sign-in event: what Graph's signIn resource holds that the emulator models."""

    id: str
    created: str  # ISO, UTC, "Z"
    user_id: str
    upn: str
    display_name: str
    client_app: str
    error_code: int
    ip: str
    app: str

    def as_graph(self) -> dict[str, Any]:
        """The event as Graph's JSON signIn (fields beyond these are not modelled)."""
        return {
            "id": self.id,
            "createdDateTime": self.created,
            "userDisplayName": self.display_name,
            "userPrincipalName": self.upn,
            "userId": self.user_id,
            "appDisplayName": self.app,
            "ipAddress": self.ip,
            "clientAppUsed": self.client_app,
            "isInteractive": self.client_app in MODERN_APPS,
            "status": {
                "errorCode": self.error_code,
                "failureReason": "Invalid username or password or Invalid on-premise username "
                "or password."
                if self.error_code
                else "Other.",
                "additionalDetails": None,
            },
        }


def _allowed(state: Any, user: dict[str, Any], switch: str) -> bool:
    guid = user.get("_policy") or state.organization.get("DefaultAuthenticationPolicy")
    policy = state.policies.get(guid) if guid else None
    if policy is None:
        return guid is None  # no policy at all: Basic auth is not blocked by this layer
    return bool(policy.get(switch))


def _smtp_auth_on(state: Any, user: dict[str, Any]) -> bool:
    own = user.get("_smtp_disabled")
    if own is not None:
        return own is False
    # Following the organization: only an org switch set to $false lets Basic SMTP through
    # (unset is Microsoft's end-of-2026 default: off).
    return state.transport.get("SmtpClientAuthenticationDisabled") is False


def _time(now: dt.datetime, minutes_ago: float) -> str:
    return (now - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_sign_ins(
    state: Any,
    now: dt.datetime,
    *,
    seed: int = 1,
    days: int = 30,
    scanner_minutes: int = 10,
    extra: int = 0,
) -> list[SignIn]:
    """The sign-ins of the last `days` days before `now` (see the module docstring)."""
    rng = random.Random(seed * 7919 + len(state.users))
    window = days * 24 * 60
    events: list[tuple[float, SignIn]] = []

    def add(user: dict[str, Any], client_app: str, minutes_ago: float, error: int = 0) -> None:
        if not 0 <= minutes_ago < window:
            return
        modern = client_app in MODERN_APPS
        events.append(
            (
                minutes_ago,
                SignIn(
                    id=str(uuid.UUID(int=rng.getrandbits(128))),
                    created=_time(now, minutes_ago),
                    user_id=user["ExternalDirectoryObjectId"],
                    upn=user["UserPrincipalName"],
                    display_name=user.get("DisplayName", ""),
                    client_app=client_app,
                    error_code=error,
                    ip=f"203.0.113.{rng.randrange(1, 255)}"
                    if error
                    else f"198.51.100.{rng.randrange(1, 255)}",
                    app="Office 365 Exchange Online" if not modern else "Office 365",
                ),
            )
        )

    people = [
        u
        for u in state.users
        if u.get("RecipientTypeDetails") == "UserMailbox"
        and not u["Name"].startswith(("scanner-", "breakglass"))
    ]
    imap_ok = [u for u in people if _allowed(state, u, SWITCH["IMAP4"])]
    for user in state.users:
        if (
            user["Name"].startswith("scanner-")
            and _allowed(state, user, SWITCH["Authenticated SMTP"])
            and _smtp_auth_on(state, user)
        ):
            start = rng.uniform(0, scanner_minutes)
            for step in range(window // max(1, scanner_minutes) + 1):
                add(user, "Authenticated SMTP", start + step * scanner_minutes)
    for user in rng.sample(imap_ok, min(3, len(imap_ok))):
        last = rng.uniform(60, 60 * 36)
        for n in range(rng.randrange(20, 60)):
            add(user, "IMAP4", last + n * rng.uniform(180, 600))
    for user in rng.sample(imap_ok, min(5, len(imap_ok))):
        for _ in range(rng.randrange(2, 6)):
            add(user, "IMAP4", rng.uniform(0, window), BAD_PASSWORD)
    if people:
        add(rng.choice(people), "Other clients", rng.uniform(60 * 24, 60 * 24 * 20))
        for user in rng.sample(people, min(50, len(people))):
            add(user, rng.choice(MODERN_APPS), rng.uniform(0, window))
    busy = imap_ok[:EXTRA_USERS]
    for n in range(extra if busy else 0):
        add(busy[n % len(busy)], "IMAP4", (n * 7.3) % window)
    events.sort(key=lambda e: e[0])  # newest first, as Graph lists them
    return [event for _, event in events]
