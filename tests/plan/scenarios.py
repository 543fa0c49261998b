"""Desired states and snapshots built directly from the model, for planner and renderer tests."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model import (
    Assignments,
    DesiredState,
    Limit,
    MatchSpec,
    PolicySpec,
    Rule,
    Safety,
    TenantPolicy,
    TenantSnapshot,
    TenantUser,
)

TENANT = "contoso.onmicrosoft.com"


def user(
    upn: str,
    policy: str | None = None,
    *,
    recipient_type: str = "UserMailbox",
    uid: str | None = None,
    **attributes: str | None,
) -> TenantUser:
    return TenantUser(
        id=uid or f"id-{upn}",
        upn=upn,
        identity=upn.partition("@")[0],
        recipient_type=recipient_type,
        policy=policy,
        **attributes,  # type: ignore[arg-type]
    )


def policy(name: str, *allow: str) -> TenantPolicy:
    return TenantPolicy(name=name, allow=frozenset(allow))


def spec(name: str, *allow: str) -> PolicySpec:
    return PolicySpec(name=name, allow=frozenset(allow))


def rule(name: str, target: str | None, match: MatchSpec, except_: MatchSpec | None = None) -> Rule:
    return Rule(name=name, policy=target, match=match, except_=except_)


ALL = MatchSpec(match_all=True)


def desired(
    policies: Iterable[PolicySpec],
    rules: Iterable[Rule] = (),
    *,
    default: str | None = None,
    manage_default: bool = False,
    unmatched: str = "ignore",
    remove: Iterable[str] = (),
    prune: bool = False,
    safety: Safety | None = None,
    tenant: str | None = None,
) -> DesiredState:
    return DesiredState(
        version=1,
        tenant=tenant,
        policies=tuple(policies),
        remove_policies=tuple(remove),
        prune_policies=prune,
        manage_default=manage_default or default is not None,
        default_policy=default,
        assignments=Assignments(unmatched=unmatched, rules=tuple(rules)),  # type: ignore[arg-type]
        safety=safety or Safety(),
    )


def snapshot(
    policies: Iterable[TenantPolicy],
    users: Iterable[TenantUser],
    *,
    default: str | None = None,
    groups: dict[str, Iterable[str]] | None = None,
) -> TenantSnapshot:
    return TenantSnapshot(
        tenant=TENANT,
        policies=tuple(policies),
        default_policy=default,
        users=tuple(users),
        groups={k.casefold(): frozenset(v) for k, v in (groups or {}).items()},
    )


def contoso() -> tuple[DesiredState, TenantSnapshot]:
    """DESIGN.md's example against a small tenant that needs every kind of change."""
    state = desired(
        [spec("Block Basic Auth"), spec("SMTP relay devices", "smtp")],
        [
            rule("break-glass", None, MatchSpec(users=("breakglass@contoso.com",))),
            rule(
                "devices",
                "SMTP relay devices",
                MatchSpec(
                    upn=("scanner-*@contoso.com",), recipient_type=("UserMailbox", "SharedMailbox")
                ),
            ),
            rule("contractors", "Block Basic Auth", MatchSpec(department=("Contractors",))),
            rule("everyone", "Block Basic Auth", ALL, MatchSpec(member_of=("SMTP Exceptions",))),
        ],
        default="Block Basic Auth",
        remove=["Legacy 2018 Policy"],
        safety=Safety(max_user_changes=Limit(10, percent=True), max_policy_deletes=Limit(1)),
        tenant=TENANT,
    )
    tenant = snapshot(
        [
            policy("Block Basic Auth", "imap", "smtp"),  # an admin-center edit: drift
            policy("Legacy 2018 Policy", "activesync", "imap", "pop", "smtp"),
            policy("Strict"),
        ],
        [
            user("ann@contoso.com"),
            user("bob@contoso.com", "Block Basic Auth", department="Sales"),
            user("BreakGlass@contoso.com", "Legacy 2018 Policy"),
            user("carol@contoso.com", uid="id-carol"),
            user("scanner-01@contoso.com", "block basic auth"),
            user("scanner-02@contoso.com"),
            user("scanner-03@contoso.com", "Strict", recipient_type="SharedMailbox"),
            user("scanner-lobby@contoso.com", "Strict", recipient_type="RoomMailbox"),
        ],
        default=None,
        groups={"SMTP Exceptions": ["id-carol"], "Line-of-business apps": ["id-carol"]},
    )
    return state, tenant
