"""Synthetic tenant snapshots for export and report tests (hand-built, no I/O)."""

from __future__ import annotations

from reconciler.model import TenantPolicy, TenantSnapshot, TenantUser, smtp_setting_of

ALL = frozenset(
    {
        "activesync",
        "autodiscover",
        "imap",
        "mapi",
        "offline_address_book",
        "outlook_service",
        "pop",
        "powershell",
        "reporting_web_services",
        "rpc",
        "smtp",
        "web_services",
    }
)


def user(
    n: int | str,
    policy: str | None,
    *,
    upn: str | None = None,
    recipient_type: str = "UserMailbox",
    smtp_disabled: bool | None = None,
    department: str | None = None,
) -> TenantUser:
    upn = upn if upn is not None else f"user{n}@contoso.com"
    return TenantUser(
        id=f"id-{n}",
        upn=upn,
        identity=upn.split("@")[0],
        recipient_type=recipient_type,
        policy=policy,
        department=department,
        smtp_auth=smtp_setting_of(smtp_disabled),
    )


def contoso_like(users: int = 60) -> TenantSnapshot:
    """The demo tenant in miniature: a drifted default, a device policy, an unused legacy one,
    nested groups, users with no direct policy and users holding the default directly."""
    policies = (
        TenantPolicy("Block Basic Auth", frozenset({"imap", "smtp"})),
        TenantPolicy("SMTP relay devices", frozenset({"smtp"})),
        TenantPolicy("Legacy 2018 Policy", frozenset({"imap", "pop", "activesync", "smtp"})),
    )
    rows = [user(i, "Block Basic Auth") for i in range(users - 8)]
    rows += [user(i, None) for i in range(users - 8, users - 3)]  # newest: rely on the default
    rows += [
        user(f"s{i}", "SMTP relay devices", upn=f"scanner-{i:02d}@contoso.com") for i in range(3)
    ]
    rows.append(user("bg", None, upn="breakglass@contoso.com"))
    groups = {
        "smtp exceptions": frozenset({"id-s0", "id-s1", "id-0"}),
        "line-of-business apps": frozenset({"id-0"}),
    }
    return TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=policies,
        default_policy="Block Basic Auth",
        users=tuple(rows),
        groups=groups,
        smtp_org="enabled",
        smtp_org_read=True,
        mailboxes_read=True,
    )


def no_default() -> TenantSnapshot:
    """No org default: users without a direct policy have no policy at all."""
    return TenantSnapshot(
        tenant="fabrikam.onmicrosoft.com",
        policies=(TenantPolicy("Strict", frozenset()),),
        default_policy=None,
        users=(user(1, "Strict"), user(2, None), user(3, "Strict")),
    )


HOSTILE_NAMES = (
    "yes",
    "null",
    "2018",
    "# not a comment",
    "a: b",
    "- dash",
    "'quoted'",
    '"double"',
    "[flow]",
    "{flow}",
    "*alias",
    "&anchor",
    "Ünïcödé policy",
    "tab\there",
    "<script>alert(1)</script>",
    "=HYPERLINK(1)",
    "|pipe|",
)


def hostile() -> TenantSnapshot:
    """Policy names and UPNs that YAML, Markdown, CSV or a terminal would misread."""
    policies = tuple(
        TenantPolicy(name, frozenset({"smtp"} if i % 2 else set()))
        for i, name in enumerate(HOSTILE_NAMES)
    )
    rows = [user(i, name, upn=f"o'brien+{i}@contoso.com") for i, name in enumerate(HOSTILE_NAMES)]
    rows.append(user("x", "yes", upn="null"))
    rows.append(user("y", None, upn="#hash@contoso.com"))
    rows.append(user("z", "yes", upn="ünï@cöntoso.com"))
    return TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=policies,
        default_policy="null",
        users=tuple(rows),
    )


def dangling() -> TenantSnapshot:
    """A user still linked to a removed policy, and one without a UPN."""
    return TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=(TenantPolicy("Block Basic Auth", frozenset()),),
        default_policy="Block Basic Auth",
        users=(
            user(1, "Block Basic Auth"),
            user(2, "Removed Policy"),
            user(3, "Block Basic Auth", upn=""),
        ),
    )


def empty() -> TenantSnapshot:
    return TenantSnapshot(
        tenant="empty.onmicrosoft.com", policies=(), default_policy=None, users=()
    )


SCENARIOS = {
    "contoso_like": contoso_like,
    "no_default": no_default,
    "hostile": hostile,
    "dangling": dangling,
    "empty": empty,
}


def undeclarable_default() -> TenantSnapshot:
    """The default is a policy whose name the file format refuses (a control character)."""
    return TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=(TenantPolicy("Bad\tName", frozenset()), TenantPolicy("Good", frozenset())),
        default_policy="Bad\tName",
        users=(user(1, "Good"), user(2, None), user(3, "Bad\tName")),
    )


def dangling_default() -> TenantSnapshot:
    """The default points at a policy that no longer exists."""
    return TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=(TenantPolicy("Good", frozenset()),),
        default_policy="Gone",
        users=(user(1, "Good"), user(2, None)),
    )


SCENARIOS["undeclarable_default"] = undeclarable_default
SCENARIOS["dangling_default"] = dangling_default
