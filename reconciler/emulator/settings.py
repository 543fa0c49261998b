"""Every knob of the emulator in one dataclass.

Settings fall in two groups: start-up settings (tenant size, seed, where state lives, port) and
run-time settings (faults, throttling, latency, and the behaviours that the reference marks as
unverified), which `Emulator.set_faults(**kw)` and `POST /_emulator/faults` may change while the
server runs. docs/emulator.md documents each one, its default and why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REMOVE_REFERENCED_CHOICES = ("reject", "orphan", "clear")
WRITE_RESPONSE_CHOICES = ("empty", "absent", "null", "no_content")
FORBIDDEN_BODY_CHOICES = ("nul_gzip", "empty")
NEXT_LINK_STYLES = ("echo", "guid", "domain", "backend_host")
BATCH_MEMBER_AUTH_CHOICES = ("required", "ignored")
POLICY_REFERENCE_FORMATS = ("name", "dn", "guid", "object", "rotate")
CURSOR_AFFINITY_CHOICES = ("lenient", "strict")
SMTP_DEFAULT_OFF_CHOICES = ("hidden", "org_flag")
# The tenant's Conditional Access policies (Graph identity/conditionalAccess/policies):
# none | block_legacy (enforced: every user, Exchange ActiveSync and other clients, block) |
# report_only (the same policy in report-only mode) | block_smtp_only (enforced, other clients
# only: not CIS's shape, yet it defeats an SMTP AUTH exception).
CONDITIONAL_ACCESS_CHOICES = ("none", "block_legacy", "report_only", "block_smtp_only")
CLOUDS = ("commercial", "gcc-high", "dod", "china")
# The Exchange resource (token audience) of each cloud; the emulator accepts only its own cloud's.
CLOUD_AUDIENCES = {
    "commercial": ("https://outlook.office365.com", "https://outlook.office.com"),
    "gcc-high": ("https://outlook.office365.us",),
    "dod": ("https://outlook-dod.office365.us",),
    "china": ("https://partner.outlook.cn",),
}
CLOUD_GRAPH = {
    "commercial": "https://graph.microsoft.com",
    "gcc-high": "https://graph.microsoft.us",
    "dod": "https://dod-graph.microsoft.us",
    "china": "https://microsoftgraph.chinacloudapi.cn",
}

# Malformed-response injections (hardening tests for the client). Each has a `<name>_rate` setting
# and may be queued as a one-shot with `one_shot=[name, ...]`.
MALFORMED_KINDS = (
    "non_json",  # 200 with an HTML body
    "nul_gzip_403",  # 403 whose body is NUL bytes declared as gzip
    "missing_value",  # 200 envelope without "value"
    "truncated_json",  # 200 whose JSON is cut in half
    "foreign_next_link",  # a page whose @odata.nextLink points at another host
)
# Transport faults: also rates or one-shots.
TRANSPORT_FAULTS = ("error_503", "error_504", "reset_before_write", "reset_after_write")


@dataclass
class EmulatorSettings:
    """Configuration of one emulator instance (see docs/emulator.md for each field)."""

    # --- start-up: tenant and storage --------------------------------------------------------
    users: int = 2000
    seed: int = 1
    state_dir: Path | str | None = None  # keys, certificates, state; a temp dir when None
    state_file: Path | str | None = None  # load the tenant from here (and save back) when set
    save_on_exit: bool = True  # write state_file (or state_dir/tenant.json) atomically on stop
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    tenant_domain: str = "contoso.onmicrosoft.com"
    user_domain: str = "contoso.com"
    control_api: bool = False  # serve /_emulator/* (stats, state, reset, faults)
    # Which Microsoft cloud the emulator stands in for: the token audiences it issues and accepts.
    cloud: str = "commercial"
    # The host name of the "backend" the front end redirects to and nextLinks may name: the
    # same socket answers as `host` and as this name (the certificate names both).
    backend_host: str = "localhost"
    # Extra or overridden app registrations: name -> {"manage_as_app": bool, "roles": [...],
    # "certificate": bool}; roles by name (exchange_administrator, global_reader, ...) or wid.
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Many tenants from one socket (MSP fleets): how many, their sizes (varied: `users` times
    # 1, 0.5, 1.5, 0.25, 0.75 in turn; equal: `users` each), and the tenants (1-based) where
    # the multi-tenant app was never consented (Entra answers AADSTS700016 there).
    tenants: int = 1
    tenant_sizes: str = "varied"
    tenants_without_consent: tuple[int, ...] = ()

    # --- identity ------------------------------------------------------------------------------
    # Token `aud` values the admin API accepts; empty = the cloud's own (CLOUD_AUDIENCES).
    accepted_audiences: tuple[str, ...] = ()
    token_lifetime_seconds: int = 3599
    # The API treats tokens older than this as expired although their exp says otherwise
    # (models tokens that "expire early", e.g. revoked sessions). None = honour exp.
    token_early_expiry_seconds: float | None = None
    revoked_apps: tuple[str, ...] = ()  # app names whose credentials (and live tokens) are refused
    federated_issuer: str = "https://token.emulator.invalid"
    federated_audience: str = "api://AzureADTokenExchange"

    # --- unverified behaviours (conservative defaults) ----------------------------------------
    remove_referenced: str = "reject"  # reject | orphan | clear
    null_reference_policies: tuple[
        str, ...
    ] = ()  # names Set-AuthenticationPolicy fails for; "*" = all
    missing_policy_identity_returns_all: bool = True  # Get-AuthenticationPolicy -Identity <missing>
    # Get-User / Get-Recipient / Get-CASMailbox -Identity <missing> return every object
    # (round2-facts.md §3: Microsoft's caution on Get-User).
    missing_identity_returns_all: bool = True
    # Form of @odata.nextLink: echo (the URL called) | guid (tenant segment = GUID) | domain
    # (tenant segment = initial domain) | backend_host (another host name, same socket).
    next_link_style: str = "backend_host"
    # The first admin request of a tenant on the front host answers 307 to the backend host.
    redirect_to_backend: bool = True
    # $batch members must carry their own Authorization header (required) or inherit (ignored).
    batch_member_auth: str = "required"
    # How AuthenticationPolicy / DefaultAuthenticationPolicy are rendered: name | dn | guid |
    # object ({"Name", "DistinguishedName", "Guid"}) | rotate (one of the four per request).
    policy_reference_format: str = "rotate"
    # strict: a nextLink works once, and only with the X-AnchorMailbox of the first page.
    cursor_affinity: str = "strict"
    # How Microsoft's end-of-2026 Basic SMTP AUTH default-off shows in a tenant whose admin never
    # set Set-TransportConfig -SmtpClientAuthenticationDisabled (round2-facts.md §1, unverified):
    # hidden (a service-side switch: Get-TransportConfig shows no value) | org_flag (Microsoft
    # flipped the org switch: it reads $true). A value an admin set always shows as set.
    smtp_default_off: str = "hidden"
    # The tenant has an Entra ID P1/P2 licence: Graph serves the sign-in log (else 403
    # Authentication_RequestFromNonPremiumTenantOrB2CTenant, round2-facts.md §2).
    graph_premium_licence: bool = True
    # Conditional Access (CONDITIONAL_ACCESS_CHOICES above), and the UPNs its policy excludes
    # by user id (a break-glass account, the devices of an SMTP AUTH exception).
    conditional_access: str = "none"
    conditional_access_exclude: tuple[str, ...] = ()
    # Get-OrganizationConfig OAuth2ClientProfileEnabled (modern authentication for Outlook);
    # Microsoft's default for tenants since 2017 is on.
    oauth2_client_profile_enabled: bool = True
    # Get-User -Filter is served (supported) or refused as invalid syntax (refused): a client
    # that partitions its reads by filter must then fall back to one cursor. Microsoft
    # documents Get-User's filter on UserPrincipalName and Name (round2-facts.md §3).
    user_filters: str = "supported"
    # Get-CASMailbox -Filter: the reference documents only Get-User's, so by default refused
    # as invalid syntax (the pessimistic reading: a client partitioning the mailbox read by
    # Name must read it on one cursor) | supported (served as Get-User's).
    mailbox_filters: str = "refused"
    # Order of Get-User (and Get-CASMailbox) output without -SortBy (none is documented): upn
    # (by UserPrincipalName, mailboxes by Name: a first page then says nothing about the names
    # after it, the worst case for a client that splits its read by a page's names) | stored
    # (creation order).
    user_order: str = "upn"
    graph_page_size: int = 1000  # most sign-ins per Graph page (and never more than $top)
    # `createdDateTime le ...` in a signIns $filter: refused (400; round2-facts.md §2 names
    # only ge, so the pessimistic reading: a client reading the log in time slices must then
    # read it on one cursor) | supported (Microsoft's signIn resource lists eq, le, ge).
    graph_date_upper_bound: str = "refused"
    graph_throttle_budget: int = 0  # Graph requests per throttle window; 0 = unlimited
    graph_latency_ms: float = 0.0  # per Graph page
    # The synthetic sign-in log (emulator/signins.py): days kept (Entra P1/P2: 30), how often
    # the device accounts send with Authenticated SMTP, and extra legacy sign-ins (benchmarks).
    sign_in_retention_days: int = 30
    sign_in_scanner_minutes: int = 10
    sign_in_extra_events: int = 0
    # RecipientTypeDetails for which Set-User -AuthenticationPolicy fails with Exchange's error.
    set_user_refuses: tuple[str, ...] = ("GuestMailUser", "MailUser")
    accept_external_directory_object_id: bool = False  # as -Identity of Get-User/Set-User
    write_response: str = (
        "empty"  # Set/Remove answers: empty value | absent | null | no_content (204)
    )
    new_returns_object: bool = True  # New-AuthenticationPolicy returns the created object
    forbidden_body: str = "nul_gzip"  # body of 403 for unknown/unauthorised cmdlets
    default_page_size: int = 1000  # page size without a Prefer header
    cursor_expiry_seconds: float = 1800.0

    # --- load ---------------------------------------------------------------------------------
    throttle_budget: int = 0  # requests per app per window; 0 = unlimited
    throttle_window_seconds: float = 60.0
    max_concurrent_per_tenant: int = 0  # 0 = unlimited
    concurrency_status: int = 429
    latency_base_ms: float = 0.0
    latency_per_object_ms: float = 0.0

    # --- fault injection (rates are probabilities 0..1 per adminapi request) -------------------
    error_503_rate: float = 0.0
    error_504_rate: float = 0.0
    reset_before_write_rate: float = 0.0
    reset_after_write_rate: float = 0.0
    non_json_rate: float = 0.0
    nul_gzip_403_rate: float = 0.0
    missing_value_rate: float = 0.0
    truncated_json_rate: float = 0.0
    foreign_next_link_rate: float = 0.0
    one_shot: list[str] = field(default_factory=list)  # faults applied once each, in order
    fault_seed: int | None = None  # seed of the fault dice; None = nondeterministic

    def validate(self) -> None:
        """Raise ValueError with a one-line message when a setting is out of range."""
        if self.remove_referenced not in REMOVE_REFERENCED_CHOICES:
            raise ValueError(
                f"remove_referenced must be one of {', '.join(REMOVE_REFERENCED_CHOICES)}"
            )
        if self.write_response not in WRITE_RESPONSE_CHOICES:
            raise ValueError(f"write_response must be one of {', '.join(WRITE_RESPONSE_CHOICES)}")
        if self.forbidden_body not in FORBIDDEN_BODY_CHOICES:
            raise ValueError(f"forbidden_body must be one of {', '.join(FORBIDDEN_BODY_CHOICES)}")
        for name, value, choices in (
            ("next_link_style", self.next_link_style, NEXT_LINK_STYLES),
            ("batch_member_auth", self.batch_member_auth, BATCH_MEMBER_AUTH_CHOICES),
            ("policy_reference_format", self.policy_reference_format, POLICY_REFERENCE_FORMATS),
            ("cursor_affinity", self.cursor_affinity, CURSOR_AFFINITY_CHOICES),
            ("smtp_default_off", self.smtp_default_off, SMTP_DEFAULT_OFF_CHOICES),
            ("conditional_access", self.conditional_access, CONDITIONAL_ACCESS_CHOICES),
            ("cloud", self.cloud, CLOUDS),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}")
        if self.users < 0:
            raise ValueError("users must be >= 0")
        if not 1 <= self.tenants <= 500:
            raise ValueError("tenants must be between 1 and 500")
        if self.tenant_sizes not in ("varied", "equal"):
            raise ValueError("tenant_sizes must be one of varied, equal")
        if any(not 1 <= k <= self.tenants for k in self.tenants_without_consent):
            raise ValueError("tenants_without_consent names tenants 1..tenants")
        if not 1 <= self.default_page_size <= 1000:
            raise ValueError("default_page_size must be between 1 and 1000")
        if self.user_filters not in ("supported", "refused"):
            raise ValueError("user_filters must be one of supported, refused")
        if self.mailbox_filters not in ("supported", "refused"):
            raise ValueError("mailbox_filters must be one of supported, refused")
        if self.graph_date_upper_bound not in ("supported", "refused"):
            raise ValueError("graph_date_upper_bound must be one of supported, refused")
        if self.user_order not in ("stored", "upn"):
            raise ValueError("user_order must be one of stored, upn")
        if not 1 <= self.graph_page_size <= 1000:
            raise ValueError("graph_page_size must be between 1 and 1000")
        if not 1 <= self.sign_in_retention_days <= 90:
            raise ValueError("sign_in_retention_days must be between 1 and 90")
        if self.sign_in_scanner_minutes < 1 or self.sign_in_extra_events < 0:
            raise ValueError("sign_in_scanner_minutes must be >= 1, sign_in_extra_events >= 0")
        for name in (*TRANSPORT_FAULTS, *MALFORMED_KINDS):
            rate = getattr(self, f"{name}_rate")
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"{name}_rate must be between 0 and 1")
        for shot in self.one_shot:
            if shot not in (*TRANSPORT_FAULTS, *MALFORMED_KINDS):
                raise ValueError(f"unknown one-shot fault {shot!r}")


# Settings that only make sense at start-up; everything else may change at run time.
STARTUP_ONLY = frozenset(
    {
        "users",
        "seed",
        "state_dir",
        "state_file",
        "host",
        "port",
        "tenant_domain",
        "user_domain",
        "apps",
        "cloud",
        "backend_host",
        "tenants",
        "tenant_sizes",
        "tenants_without_consent",
        "sign_in_retention_days",
        "sign_in_scanner_minutes",
        "sign_in_extra_events",
    }
)


def audiences_of(settings: EmulatorSettings) -> tuple[str, ...]:
    """The token audiences the admin API accepts under `settings`."""
    return settings.accepted_audiences or CLOUD_AUDIENCES[settings.cloud]


def runtime_setting_names() -> frozenset[str]:
    """Names that `set_faults` accepts."""
    return frozenset(f.name for f in dataclasses.fields(EmulatorSettings)) - STARTUP_ONLY


def apply_runtime_changes(settings: EmulatorSettings, changes: dict[str, Any]) -> EmulatorSettings:
    """Return a copy of settings with `changes` applied; ValueError for unknown or bad values."""
    allowed = runtime_setting_names()
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(f"unknown or start-up-only setting(s): {', '.join(unknown)}")
    coerced: dict[str, Any] = {}
    for key, value in changes.items():
        if key in {
            "revoked_apps",
            "null_reference_policies",
            "accepted_audiences",
            "set_user_refuses",
            "tenants_without_consent",
            "conditional_access_exclude",
        }:
            value = tuple(value or ())
        if key == "one_shot":
            value = list(value or ())
        coerced[key] = value
    updated = dataclasses.replace(settings, **coerced)
    updated.validate()
    return updated
