"""The compliance checks of `report --baseline`: each once, with the ids auditors use.

A check is evaluated from one snapshot (and, when given, the policies.yaml it is managed from)
into a `CheckResult`: pass, fail or not assessed (and why), the evidence (counts and the first
few objects), the fix in policies.yaml terms, and `Finding`s located at the line of the file
they concern. The sources (round2-facts.md §4, docs/compliance.md):

- CISA SCuBA, Microsoft 365 Exchange Online baseline, policy MS.EXO.5.1v1;
- CIS Microsoft 365 Foundations Benchmark v4.0.0, recommendations 6.5.4, 6.5.1 and 5.2.2.3
  (CIS renumbers between versions: these are v4.0.0's numbers);
- authpolicy's own AP.1 to AP.5, for what no baseline checks: the authentication-policy layer
  and its exceptions.

Nothing here reads the tenant: the snapshot holds what was read, and a check whose input could
not be read is "not_assessed" with the reason, never a pass or a fail it cannot prove.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

from reconciler.model import (
    PROTOCOL_NAMES,
    DesiredState,
    SourceLocation,
    TenantSnapshot,
)
from reconciler.render.escape import mask_upn
from reconciler.report.model import ExposureReport, build_report

Status: TypeAlias = Literal["pass", "fail", "not_assessed"]
BaselineName: TypeAlias = Literal["cisa", "cis", "authpolicy"]
BASELINES: tuple[BaselineName, ...] = ("cisa", "cis", "authpolicy")
BASELINE_CHOICES = (*BASELINES, "all")

# The versions the ids come from (CIS renumbers recommendations between versions).
SOURCES: Mapping[BaselineName, str] = {
    "cisa": "CISA SCuBA Microsoft 365 Exchange Online Secure Configuration Baseline (MS.EXO v1)",
    "cis": "CIS Microsoft 365 Foundations Benchmark v4.0.0",
    "authpolicy": "authpolicy's own checks (no baseline has them)",
}
OBJECTS_SHOWN = 5  # objects named per finding; the count says how many there are


@dataclass(frozen=True, slots=True)
class Control:
    """One baseline's id for a check."""

    baseline: BaselineName
    id: str
    level: str  # SHALL (CISA), L1 (CIS), - (ours)


@dataclass(frozen=True, slots=True)
class Check:
    key: str  # stable slug (fingerprints, JUnit names)
    title: str
    controls: tuple[Control, ...]
    rationale: str

    def ids(self, baselines: Sequence[str] = BASELINES) -> tuple[str, ...]:
        return tuple(c.id for c in self.controls if c.baseline in baselines)

    def primary(self, baselines: Sequence[str] = BASELINES) -> str:
        ids = self.ids(baselines)
        return ids[0] if ids else self.controls[0].id


@dataclass(frozen=True, slots=True)
class Finding:
    """One located group of a result: a policy, a rule, or the tenant-wide setting."""

    message: str
    location: SourceLocation | None = None
    group: str = ""  # what it is about (policy or rule name): stable across line moves
    objects: tuple[str, ...] = ()  # the first few users (or other objects) concerned
    count: int = 0  # how many objects in all


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    status: Status
    summary: str  # one line: what was found
    fix: str = ""  # in policies.yaml terms (or the cmdlet, for what the file does not manage)
    reason: str = ""  # not_assessed: why
    evidence: Mapping[str, object] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class BaselineResult:
    tenant: str
    baselines: tuple[BaselineName, ...]
    results: tuple[CheckResult, ...]
    config_file: str | None = None
    made_at: str | None = None
    strict: bool = False

    def counts(self) -> dict[str, int]:
        counted = Counter(r.status for r in self.results)
        return {s: counted[s] for s in ("pass", "fail", "not_assessed")}

    def failed(self, result: CheckResult) -> bool:
        """Does this result fail the run (not assessed fails only with --strict)?"""
        return result.status == "fail" or (self.strict and result.status == "not_assessed")

    @property
    def any_failed(self) -> bool:
        return any(self.failed(r) for r in self.results)


def _ctl(baseline: BaselineName, id_: str, level: str) -> Control:
    return Control(baseline, id_, level)


SMTP_AUTH_ORG = Check(
    "smtp-auth-organization",
    "SMTP AUTH is disabled for the organization",
    (_ctl("cisa", "MS.EXO.5.1v1", "SHALL"), _ctl("cis", "CIS 6.5.4", "L1")),
    "Authenticated SMTP is the last protocol that still takes Basic auth; off for the "
    "organization, only mailboxes that are explicitly enabled can use it.",
)
MODERN_AUTH = Check(
    "modern-authentication",
    "Modern authentication is enabled for Exchange Online",
    (_ctl("cis", "CIS 6.5.1", "L1"),),
    "Outlook clients sign in with OAuth (and MFA) only when OAuth2ClientProfileEnabled is on.",
)
CA_LEGACY = Check(
    "conditional-access-legacy-block",
    "Conditional Access blocks legacy authentication",
    (_ctl("cis", "CIS 5.2.2.3", "L1"),),
    "An enforced Conditional Access policy that blocks Exchange ActiveSync and other clients "
    "for every user stops legacy sign-ins in Entra, beside Exchange's own policies.",
)
DEFAULT_BLOCKS_ALL = Check(
    "default-policy-blocks-all",
    "An organization default authentication policy exists and blocks every protocol",
    (_ctl("authpolicy", "AP.1", "-"),),
    "Users without a direct policy (every new account) get the default: it must block Basic "
    "auth everywhere, so nobody is exposed by omission.",
)
EVERYONE_COVERED = Check(
    "every-user-has-a-policy",
    "No user is left without an effective authentication policy",
    (_ctl("authpolicy", "AP.2", "-"),),
    "A user with no direct policy and no default (or a policy that no longer exists) has "
    "nothing blocking Basic auth.",
)
EXCEPTIONS_SMTP_ONLY = Check(
    "exceptions-allow-only-smtp",
    "Exception policies allow only Basic SMTP",
    (_ctl("authpolicy", "AP.3", "-"),),
    "Authenticated SMTP is the only protocol Exchange Online still accepts Basic auth for; an "
    "exception allowing anything else is a mistake or a relic.",
)
EXCEPTIONS_OWNED = Check(
    "exceptions-owned-and-expiring",
    "Every exception has an owner and an expiry date",
    (_ctl("authpolicy", "AP.4", "-"),),
    "An exception nobody owns and that never ends is how exceptions pile up.",
)
EXCEPTIONS_USED = Check(
    "exceptions-used",
    "Every exception was used in the sign-in window",
    (_ctl("authpolicy", "AP.5", "-"),),
    "An exception nobody used with Basic auth in the window can be removed before it is abused.",
)

CHECKS: tuple[Check, ...] = (
    SMTP_AUTH_ORG,
    MODERN_AUTH,
    CA_LEGACY,
    DEFAULT_BLOCKS_ALL,
    EVERYONE_COVERED,
    EXCEPTIONS_SMTP_ONLY,
    EXCEPTIONS_OWNED,
    EXCEPTIONS_USED,
)


def selected_baselines(choice: str | Sequence[str]) -> tuple[BaselineName, ...]:
    """`all` or one name (or several) as the tuple of baselines, in BASELINES order."""
    names = {choice} if isinstance(choice, str) else set(choice)
    if "all" in names:
        return BASELINES
    return tuple(b for b in BASELINES if b in names)


@dataclass(frozen=True, slots=True)
class _Inputs:
    snapshot: TenantSnapshot
    report: ExposureReport
    desired: DesiredState | None
    today: dt.date
    mask: Callable[[str], str]

    def file_location(self, *keys: str) -> SourceLocation | None:
        """The first of these settings the file wrote, else the file itself (line 1)."""
        if self.desired is None:
            return None
        return self.desired.location_of(*keys) or SourceLocation(self.desired.source, 1, 1)

    def policy_location(self, name: str | None) -> SourceLocation | None:
        if self.desired is not None and name is not None:
            spec = self.desired.policy(name)
            if spec is not None and spec.location is not None:
                return spec.location
            for rule in self.desired.assignments.rules:
                if rule.policy is not None and rule.policy.casefold() == name.casefold():
                    return rule.location
        return self.file_location("policies")

    def names(self, upns: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.mask(u) for u in upns[:OBJECTS_SHOWN])


def evaluate(
    snapshot: TenantSnapshot,
    desired: DesiredState | None = None,
    *,
    baselines: Sequence[BaselineName] = BASELINES,
    report: ExposureReport | None = None,
    today: dt.date | None = None,
    mask_users: bool = False,
    strict: bool = False,
    made_at: str | None = None,
) -> BaselineResult:
    """Every check of the chosen baselines, in CHECKS order, from one snapshot (read with
    SMTP settings, mailboxes, the sign-in log and Conditional Access when they may be)."""
    inputs = _Inputs(
        snapshot,
        report if report is not None else build_report(snapshot),
        desired,
        today or dt.datetime.now(dt.UTC).date(),
        mask_upn if mask_users else (lambda u: u),
    )
    results = tuple(
        _EVALUATORS[check.key](check, inputs)
        for check in CHECKS
        if any(c.baseline in baselines for c in check.controls)
    )
    return BaselineResult(
        tenant=inputs.report.tenant,
        baselines=tuple(baselines),
        results=results,
        config_file=desired.source if desired is not None else None,
        made_at=made_at,
        strict=strict,
    )


# ------------------------------------------------------------------------------------ checks


def _smtp_auth_org(check: Check, i: _Inputs) -> CheckResult:
    where = i.file_location("smtp_auth.organization", "smtp_auth")
    fix = (
        "smtp_auth: {organization: disabled}  (Set-TransportConfig "
        "-SmtpClientAuthenticationDisabled $true)"
    )
    enabled_mailboxes = [
        u.upn for u in i.report.users if u.smtp_auth_source == "mailbox" and u.smtp_auth_enabled
    ]
    evidence: dict[str, object] = {"organization": i.snapshot.smtp_org or "not shown"}
    if i.snapshot.mailboxes_read:
        evidence["mailboxes_enabled_explicitly"] = len(enabled_mailboxes)
    if i.snapshot.smtp_org == "disabled":
        extra = (
            f"; {len(enabled_mailboxes):,} mailboxes enable it for themselves (Set-CASMailbox "
            "-SmtpClientAuthenticationDisabled $false)"
            if enabled_mailboxes
            else ""
        )
        return CheckResult(
            check, "pass", f"SMTP AUTH is disabled for the organization{extra}", evidence=evidence
        )
    if i.snapshot.smtp_org == "enabled":
        return CheckResult(
            check,
            "fail",
            "SMTP AUTH is enabled for the organization (Get-TransportConfig "
            "SmtpClientAuthenticationDisabled: False): every mailbox that does not disable it "
            "itself accepts Authenticated SMTP",
            fix=fix,
            evidence=evidence,
            findings=(
                Finding(
                    "SMTP AUTH is enabled for the organization",
                    where,
                    "organization",
                ),
            ),
        )
    return CheckResult(
        check,
        "not_assessed",
        "the organization's SMTP AUTH setting is not known",
        fix=fix,
        reason="Get-TransportConfig shows no SmtpClientAuthenticationDisabled value (Microsoft's "
        "service-side default applies, and the API does not say which); declare it with "
        "smtp_auth.organization",
        evidence=evidence,
        findings=(
            Finding("the organization's SMTP AUTH setting is not shown", where, "organization"),
        ),
    )


def _modern_auth(check: Check, i: _Inputs) -> CheckResult:
    fix = (
        "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true (outside policies.yaml: "
        "authpolicy does not manage this setting)"
    )
    value = i.snapshot.modern_auth
    evidence = {"OAuth2ClientProfileEnabled": "not shown" if value is None else value}
    if value is True:
        return CheckResult(check, "pass", "OAuth2ClientProfileEnabled is True", evidence=evidence)
    if value is False:
        return CheckResult(
            check,
            "fail",
            "OAuth2ClientProfileEnabled is False: Outlook clients fall back to Basic auth",
            fix=fix,
            evidence=evidence,
            findings=(Finding("modern authentication is off", i.file_location(), "organization"),),
        )
    return CheckResult(
        check,
        "not_assessed",
        "modern authentication is not known",
        fix=fix,
        reason="Get-OrganizationConfig did not show OAuth2ClientProfileEnabled",
        evidence=evidence,
    )


def _ca_legacy(check: Check, i: _Inputs) -> CheckResult:
    fix = (
        "a Conditional Access policy (outside policies.yaml): all users, all cloud apps, "
        "client apps Exchange ActiveSync clients and Other clients, grant Block access; exclude "
        "a break-glass account and, by id, the users of each smtp_auth: enabled exception"
    )
    read = i.snapshot.conditional_access
    if read is None or not read.read:
        return CheckResult(
            check,
            "not_assessed",
            "Conditional Access was not read",
            fix=fix,
            reason=read.reason if read is not None else "Conditional Access was not asked for",
        )
    enforced = [p for p in read.policies if p.blocks_legacy and "All" in p.include_users]
    evidence: dict[str, object] = {"policies": len(read.policies)}
    if enforced:
        best = min(enforced, key=lambda p: len(p.exclude_users) + len(p.exclude_groups))
        evidence |= {
            "policy": best.name,
            "excluded_users": len(best.exclude_users),
            "excluded_groups": len(best.exclude_groups),
            "excluded_roles": len(best.exclude_roles),
        }
        excluded = ""
        if best.exclude_users or best.exclude_groups or best.exclude_roles:
            excluded = (
                f", excluding {len(best.exclude_users)} users, {len(best.exclude_groups)} "
                f"groups and {len(best.exclude_roles)} roles"
            )
        return CheckResult(
            check,
            "pass",
            f"{best.name!r} blocks legacy authentication for all users{excluded}",
            evidence=evidence,
        )
    near = [p for p in read.policies if p.shapes_legacy_block()]
    why = "no Conditional Access policy blocks Exchange ActiveSync and other clients"
    if near:
        states = ", ".join(
            f"{p.name!r} ({'report-only' if p.state.startswith('enabledForReporting') else p.state}"
            f"{'' if 'All' in p.include_users else ', not all users'})"
            for p in near
        )
        why = f"no enforced policy blocks legacy authentication for all users: {states}"
    return CheckResult(
        check,
        "fail",
        why,
        fix=fix,
        evidence=evidence | {"near_misses": [p.name for p in near]},
        findings=(Finding(why, i.file_location(), "conditional-access"),),
    )


def _default_blocks_all(check: Check, i: _Inputs) -> CheckResult:
    where = i.file_location("default_policy", "policies")
    fix = "policies: {Block Basic Auth: {allow: []}} and default_policy: Block Basic Auth"
    r = i.report
    relying = sum(1 for u in r.users if u.via != "direct")
    evidence: dict[str, object] = {"default_policy": r.default_policy, "users_relying": relying}
    if r.default_policy is None:
        return CheckResult(
            check,
            "fail",
            f"the organization has no default authentication policy ({relying:,} users have no "
            "direct one either)",
            fix=fix,
            evidence=evidence,
            findings=(Finding("no organization default authentication policy", where, "default"),),
        )
    if not r.default_policy_found:
        return CheckResult(
            check,
            "fail",
            f"the default names {r.default_policy!r}, which no longer exists: nothing blocks "
            f"Basic auth for the {relying:,} users who rely on it",
            fix=fix,
            evidence=evidence,
            findings=(
                Finding(f"the default {r.default_policy!r} does not exist", where, "default"),
            ),
        )
    policy = i.snapshot.policy(r.default_policy)
    allowed = [p for p in PROTOCOL_NAMES if policy is not None and p in policy.allow]
    evidence["allows"] = allowed
    if allowed:
        return CheckResult(
            check,
            "fail",
            f"the default {r.default_policy!r} allows Basic auth for {', '.join(allowed)} "
            f"({relying:,} users rely on it)",
            fix=f"policies: {{{r.default_policy}: {{allow: []}}}}",
            evidence=evidence,
            findings=(
                Finding(
                    f"the default {r.default_policy!r} allows {', '.join(allowed)}",
                    i.policy_location(r.default_policy)
                    if i.desired is not None and i.desired.policy(r.default_policy)
                    else where,
                    "default",
                ),
            ),
        )
    return CheckResult(
        check,
        "pass",
        f"the default {r.default_policy!r} blocks Basic auth on all {len(PROTOCOL_NAMES)} "
        "protocols",
        evidence=evidence,
    )


def _everyone_covered(check: Check, i: _Inputs) -> CheckResult:
    r = i.report
    where = i.file_location("default_policy", "assignments.unmatched", "assignments")
    no_policy = [u.upn for u in r.no_policy]
    dangling: dict[str, list[str]] = {}
    for u in r.dangling:
        if u.via != "none" and u.effective_policy is not None:
            dangling.setdefault(u.effective_policy, []).append(u.upn)
    evidence = {
        "users": r.total_users,
        "no_policy": len(no_policy),
        "policy_not_found": sum(len(v) for v in dangling.values()),
    }
    findings = []
    if no_policy:
        findings.append(
            Finding(
                f"{len(no_policy):,} users have no authentication policy (no direct one, no "
                "default)",
                where,
                "no-policy",
                i.names(no_policy),
                len(no_policy),
            )
        )
    for name, upns in sorted(dangling.items()):
        findings.append(
            Finding(
                f"{len(upns):,} users hold policy {name!r}, which no longer exists",
                where,
                f"missing:{name.casefold()}",
                i.names(upns),
                len(upns),
            )
        )
    if not findings:
        return CheckResult(
            check,
            "pass",
            f"all {r.total_users:,} users have an effective authentication policy",
            evidence=evidence,
        )
    missing = len(no_policy) + evidence["policy_not_found"]
    return CheckResult(
        check,
        "fail",
        f"{missing:,} of {r.total_users:,} users have no effective authentication policy",
        fix="default_policy: a policy with allow: [] (it covers every user no rule gives a "
        "policy), or a rule that matches them",
        evidence=evidence,
        findings=tuple(findings),
    )


def _exception_policies(i: _Inputs) -> list[tuple[str, tuple[str, ...], int]]:
    """(name, allowed protocols, direct users) of every tenant policy other than the default
    that lets Basic auth through somewhere."""
    direct = Counter(
        u.effective_policy.casefold()
        for u in i.report.users
        if u.via == "direct" and u.effective_policy is not None
    )
    default = (i.report.default_policy or "").casefold()
    return [
        (p.name, tuple(n for n in PROTOCOL_NAMES if n in p.allow), direct[p.name.casefold()])
        for p in sorted(i.snapshot.policies, key=lambda p: p.name.casefold())
        if p.allow and p.name.casefold() != default
    ]


def _exceptions_smtp_only(check: Check, i: _Inputs) -> CheckResult:
    exceptions = _exception_policies(i)
    wrong = [(n, a, c) for n, a, c in exceptions if set(a) - {"smtp"}]
    evidence = {"exception_policies": len(exceptions), "allowing_more_than_smtp": len(wrong)}
    if not wrong:
        return CheckResult(
            check,
            "pass",
            f"{len(exceptions)} exception policies, each allowing only Basic SMTP"
            if exceptions
            else "no exception policies",
            evidence=evidence,
        )
    return CheckResult(
        check,
        "fail",
        f"{len(wrong)} of {len(exceptions)} exception policies allow more than Basic SMTP",
        fix="policies: {NAME: {allow: [smtp]}}: keep only smtp (Exchange Online retired Basic "
        "auth for the other protocols in 2022/2023)",
        evidence=evidence,
        findings=tuple(
            Finding(
                f"policy {name!r} allows Basic auth for "
                f"{', '.join(p for p in allowed if p != 'smtp')} ({count:,} users)",
                i.policy_location(name),
                f"policy:{name.casefold()}",
                count=count,
            )
            for name, allowed, count in wrong
        ),
    )


def _exceptions_owned(check: Check, i: _Inputs) -> CheckResult:
    fix = "owner: someone@contoso.com and expires: YYYY-MM-DD on the rule"
    if i.desired is None:
        return CheckResult(
            check,
            "not_assessed",
            "the exceptions' owners and expiry dates are in policies.yaml",
            fix=fix,
            reason="no policies.yaml given (-c FILE): owners and expiry dates live only there",
        )
    rules = []
    for rule in i.desired.assignments.rules:
        spec = i.desired.policy(rule.policy) if rule.policy is not None else None
        if (spec is not None and spec.allow) or rule.smtp_auth == "enabled":
            if rule.expires is not None and rule.expires <= i.today:
                continue  # expired: it matches nobody any more
            rules.append(rule)
    missing = [
        (r, [k for k, v in (("owner", r.owner), ("expires", r.expires)) if not v]) for r in rules
    ]
    missing = [(r, keys) for r, keys in missing if keys]
    evidence = {"exception_rules": len(rules), "without_owner_or_expiry": len(missing)}
    if not missing:
        return CheckResult(
            check,
            "pass",
            f"{len(rules)} exception rules, each with an owner and an expiry date"
            if rules
            else "no exception rules",
            evidence=evidence,
        )
    return CheckResult(
        check,
        "fail",
        f"{len(missing)} of {len(rules)} exception rules lack an owner or an expiry date",
        fix=fix,
        evidence=evidence,
        findings=tuple(
            Finding(
                f"rule {r.name!r} has no {' and no '.join(keys)}",
                r.location,
                f"rule:{r.name.casefold()}",
            )
            for r, keys in missing
        ),
    )


def _exceptions_used(check: Check, i: _Inputs) -> CheckResult:
    sign_ins = i.report.sign_ins
    fix = "remove the exception (its rule and policy), or let it expire"
    if sign_ins is None or not sign_ins.read:
        return CheckResult(
            check,
            "not_assessed",
            "the sign-in log was not read",
            fix=fix,
            reason=sign_ins.reason if sign_ins is not None else "the sign-in log was not asked for",
        )
    exceptions = {n.casefold(): (n, allowed, c) for n, allowed, c in _exception_policies(i) if c}
    holders: dict[str, list[str]] = {}
    used: set[str] = set()
    for u in i.report.users:
        key = (u.effective_policy or "").casefold()
        if u.via != "direct" or key not in exceptions:
            continue
        holders.setdefault(key, []).append(u.upn)
        if set(u.used) & set(exceptions[key][1]):
            used.add(key)
    unused = {key: exceptions[key][1] for key in exceptions if key not in used}
    evidence = {
        "days": sign_ins.days,
        "exception_policies": len(exceptions),
        "unused": len(unused),
    }
    if not unused:
        return CheckResult(
            check,
            "pass",
            f"each of {len(exceptions)} exception policies was used with Basic auth in the last "
            f"{sign_ins.days} days"
            if exceptions
            else "no exception policies hold users",
            evidence=evidence,
        )
    findings = []
    for key, protocols in sorted(unused.items()):  # protocols: what the policy allows
        name, _, count = exceptions[key]
        users = holders.get(key, [])
        findings.append(
            Finding(
                f"policy {name!r} lets {count:,} users use Basic auth for {', '.join(protocols)}; "
                f"none did in the last {sign_ins.days} days",
                i.policy_location(name),
                f"policy:{key}",
                i.names(users),
                count,
            )
        )
    return CheckResult(
        check,
        "fail",
        f"{len(unused)} of {len(exceptions)} exception policies were not used in the last "
        f"{sign_ins.days} days",
        fix=fix,
        evidence=evidence,
        findings=tuple(findings),
    )


_EVALUATORS: Mapping[str, Callable[[Check, _Inputs], CheckResult]] = {
    SMTP_AUTH_ORG.key: _smtp_auth_org,
    MODERN_AUTH.key: _modern_auth,
    CA_LEGACY.key: _ca_legacy,
    DEFAULT_BLOCKS_ALL.key: _default_blocks_all,
    EVERYONE_COVERED.key: _everyone_covered,
    EXCEPTIONS_SMTP_ONLY.key: _exceptions_smtp_only,
    EXCEPTIONS_OWNED.key: _exceptions_owned,
    EXCEPTIONS_USED.key: _exceptions_used,
}


def with_tenant(result: BaselineResult, tenant: str) -> BaselineResult:
    return replace(result, tenant=tenant)
