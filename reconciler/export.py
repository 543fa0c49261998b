"""Turn a tenant snapshot into a policies.yaml (version 1) that reproduces it.

The invariant, tested: `export` then `plan` against the same tenant gives zero changes. So the
document declares every tenant policy with its exact switches, the current default, and one
rule per policy listing the users that hold it directly (exact UPN). Users without a direct
policy are left alone by `unmatched: ignore`, so they keep relying on the default.

The output is deterministic (sorted, no timestamps): exporting an unchanged tenant twice gives
byte-identical files, which keeps git diffs of scheduled exports meaningful.

Every scalar goes through `yaml.safe_dump` (or a fast path for plain UPNs that provably need no
quoting), so policy names and UPNs that YAML would misread (`yes`, `null`, `2018`, `# x`,
quotes, non-ASCII) round-trip, and comments around them say what was found. A value the loader
would refuse is never written (see `expressible`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jsonschema
import yaml

from reconciler.desired import limits
from reconciler.desired.schema import load_schema
from reconciler.desired.source import reads_as_non_string
from reconciler.desired.starter import SCHEMA_HEADER
from reconciler.model import (
    PROTOCOL_BY_NAME,
    PROTOCOL_NAMES,
    TenantPolicy,
    TenantSnapshot,
    TenantUser,
)

log = logging.getLogger(__name__)

# Thresholds written into the exported `safety:` section. They do not affect the round trip
# (a plan with no changes never hits a guard); they protect the first edits made after export.
EXPORT_MAX_USER_CHANGES = "10%"
EXPORT_MAX_POLICY_DELETES = 1


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The exported document and what was found while building it."""

    text: str
    policies: int
    direct_users: int  # users listed in a rule (they hold a declared policy directly)
    default_users: int  # users with no direct policy (they rely on the default, if any)
    skipped: tuple[str, ...] = ()  # one line per user that could not be exported (and why)
    # Policies whose direct holders are not listed because the file would exceed the loader's
    # limits (size, values); `unmatched: ignore` still leaves those users as they are.
    unlisted: tuple[str, ...] = field(default_factory=tuple)


# A typical UPN needs no quoting: it contains "@", so YAML can't read it as a bool, null, number
# or date, and no character here is special in a plain block scalar. Skipping safe_dump for
# these makes a 100,000-user export take a second instead of half a minute.
_PLAIN_UPN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+'-]*@[A-Za-z0-9][A-Za-z0-9.-]*\Z")


def yaml_scalar(value: object) -> str:
    """One YAML scalar (flow style, one line), quoted exactly when YAML needs it."""
    if isinstance(value, str) and _PLAIN_UPN.match(value):
        return value
    dumped = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=1 << 30, sort_keys=False
    )
    # safe_dump ends a bare scalar document with "\n...\n" (or just "\n").
    text = dumped.removesuffix("\n...\n").removesuffix("\n")
    if isinstance(value, str) and (
        any(ch in text for ch in "\n\r\x85\u2028\u2029")
        or not all(ch.isprintable() for ch in value)
    ):
        # A line separator (U+2028, U+0085...) folds the scalar over two lines, which is
        # not allowed for a key; an invisible or bidi character (U+202E...) would be written
        # raw and make a reviewed diff read differently from what it says: a JSON string is a
        # valid YAML double-quoted scalar with escapes.
        text = json.dumps(value)
    elif isinstance(value, str) and text == value and reads_as_non_string(value):
        # PyYAML's resolver is YAML 1.1's; our loader also reads "-.0" or "1e3" as numbers.
        text = json.dumps(value)
    return text


def _comment(text: str, indent: int = 0) -> str:
    # A comment must stay one line whatever a policy name or UPN contains.
    safe = "".join(ch if ch.isprintable() else "?" for ch in text)
    return f"{' ' * indent}# {safe}".rstrip()


def _n(count: int, noun: str, verb: str = "") -> str:
    """ "1 user", "1,840 users"; with a verb, "1 user holds", "2 users hold"."""
    if noun.endswith("y"):
        plural = noun[:-1] + "ies"
    elif noun.endswith(("ch", "s")):
        plural = noun + "es"
    else:
        plural = noun + "s"
    text = f"{count:,} {noun if count == 1 else plural}"
    if verb:
        text += f" {verb + 's' if count == 1 else verb}"
    return text


def _allow_list(allow: Iterable[str]) -> list[str]:
    allowed = set(allow)
    return [name for name in PROTOCOL_NAMES if name in allowed]


_STRING_KEYWORDS = {"type", "description", "minLength", "maxLength", "pattern"}


def _string_checker(subschema: dict[str, Any]) -> Callable[[str], bool]:
    """A fast check equivalent to validating a string against `subschema`."""
    if set(subschema) - _STRING_KEYWORDS or subschema.get("type") != "string":
        return jsonschema.Draft202012Validator(subschema).is_valid
    pattern = re.compile(subschema["pattern"]) if "pattern" in subschema else None
    low, high = subschema.get("minLength", 0), subschema.get("maxLength", 1 << 62)

    def check(value: str) -> bool:
        return low <= len(value) <= high and (pattern is None or bool(pattern.search(value)))

    return check


@cache
def _checkers() -> dict[str, Callable[[str], bool]]:
    """Checks for the values export writes, built from the loader's own schema, so export never
    writes a value that `validate` would refuse."""
    schema = load_schema()
    defs = schema["$defs"]
    return {
        "policy": _string_checker(defs["policyName"]),
        "upn": _string_checker(defs["match"]["properties"]["users"]["items"]),
        "tenant": _string_checker(schema["properties"]["tenant"]),
    }


def expressible(kind: str, value: str) -> bool:
    """Can `value` be written as a `kind` (policy, upn, tenant) in a valid policies.yaml?"""
    return _checkers()[kind](value)


def _user_sort_key(user: TenantUser) -> tuple[str, str]:
    return (user.upn.casefold(), user.upn)


def export_policies_yaml(snapshot: TenantSnapshot, tenant_name: str | None = None) -> ExportResult:
    """The policies.yaml text that declares `snapshot` exactly as it is.

    `tenant_name` is what `tenant:` says (e.g. the initial *.onmicrosoft.com domain, more
    readable than the GUID a connection may be configured with); default `snapshot.tenant`.

    Users holding a policy that no longer exists (a dangling link) and users without a usable
    UPN cannot be expressed as `users:` matches; they are skipped with a comment and left
    alone by `unmatched: ignore`, so the round trip still plans zero changes. For the same
    reason, when listing every holder would make a file the loader refuses (more than
    `limits.MAX_FILE_BYTES` or `limits.MAX_NODES`), the holders of the largest policies are
    left out, largest first, and the file says so.
    """
    every_policy = sorted(snapshot.policies, key=lambda p: (p.name.casefold(), p.name))
    # A name the file format cannot hold (control characters, over 64 characters) is left
    # undeclared: with `prune_policies: false` the plan leaves undeclared policies alone.
    policies = [p for p in every_policy if expressible("policy", p.name)]
    inexpressible = {p.name for p in every_policy} - {p.name for p in policies}
    default = snapshot.policy(snapshot.default_policy)
    default_name = default.name if default is not None else None
    # A default that names no existing policy (a dangling link) can't be declared, and
    # `default_policy: null` would plan to clear it: leave the key out (leave it as is).
    default_dangling = snapshot.default_policy is not None and default is None

    holders: dict[str, list[TenantUser]] = defaultdict(list)
    relying_on_default: list[TenantUser] = []
    skipped: list[str] = [
        f"policy {name!r}: its name cannot be written in policies.yaml; not declared, "
        "its holders are left as they are"
        for name in sorted(inexpressible)
    ]
    for user in snapshot.users:
        if user.policy is None:
            relying_on_default.append(user)
            continue
        held = snapshot.policy(user.policy)
        who = user.upn or user.id
        if held is None:
            skipped.append(
                f"{who}: holds policy {user.policy!r}, which does not exist "
                "in the tenant (dangling link); left as is"
            )
        elif held.name in inexpressible:
            skipped.append(f"{who}: holds the undeclared policy {held.name!r}; left as is")
        elif not expressible("upn", user.upn):
            skipped.append(
                f"{user.id} (UPN {user.upn!r}): the UPN cannot be written as a `users:` "
                f"match; holds {held.name!r}; left as is"
            )
        else:
            holders[held.name].append(user)
    for users in holders.values():
        users.sort(key=_user_sort_key)
    skipped.sort()

    unlisted: list[str] = []
    while True:
        text = _render(
            snapshot,
            tenant_name or snapshot.tenant,
            policies,
            default_name,
            default_name in inexpressible or default_dangling,
            holders,
            relying_on_default,
            skipped,
            unlisted,
        )
        listed = sum(len(v) for k, v in holders.items() if k not in unlisted)
        # Every listed UPN is one YAML value; the rest of the document is a few per policy.
        nodes = listed + 20 * (len(policies) + len(holders)) + 50
        if len(text.encode()) <= limits.MAX_FILE_BYTES and nodes <= limits.MAX_NODES:
            break
        remaining = [name for name in holders if name not in unlisted]
        if not remaining:
            break
        largest = max(remaining, key=lambda name: (len(holders[name]), name))
        log.info(
            "export: not listing the %d direct holders of %r: the file would exceed the limits "
            "of policies.yaml (%d bytes, %d values)",
            len(holders[largest]),
            largest,
            limits.MAX_FILE_BYTES,
            limits.MAX_NODES,
        )
        unlisted.append(largest)

    for line in skipped:  # the command shows these to the admin; here for -v logs
        log.info("export: %s", line)
    return ExportResult(
        text=text,
        policies=len(policies),
        direct_users=sum(len(v) for v in holders.values()),
        default_users=len(relying_on_default),
        skipped=tuple(skipped),
        unlisted=tuple(unlisted),
    )


def _rule_groups(
    policies: list[TenantPolicy],
    holders: dict[str, list[TenantUser]],
    unlisted: list[str],
    relying_on_default: list[TenantUser],
    snapshot: TenantSnapshot,
) -> list[tuple[str | None, str | None, list[TenantUser]]]:
    """(policy or None, explicit SMTP AUTH setting or None, users) per rule to write: the
    holders of each policy, split by their mailbox's own setting; and users with no direct
    policy whose mailbox has its own setting (a rule with `policy: null` changes nothing
    for them but states the exception)."""
    groups: list[tuple[str | None, str | None, list[TenantUser]]] = []

    def explicit(user: TenantUser) -> str | None:
        if not snapshot.mailboxes_read or user.smtp_auth == "organization":
            return None
        return user.smtp_auth

    for policy in policies:
        users = holders.get(policy.name)
        if not users or policy.name in unlisted:
            continue
        split: dict[str | None, list[TenantUser]] = defaultdict(list)
        for user in users:
            split[explicit(user)].append(user)
        for setting in (None, "disabled", "enabled"):
            if split.get(setting):
                groups.append((policy.name, setting, split[setting]))
    if snapshot.mailboxes_read:
        for setting in ("disabled", "enabled"):
            users = sorted(
                (
                    u
                    for u in relying_on_default
                    if u.smtp_auth == setting and expressible("upn", u.upn)
                ),
                key=_user_sort_key,
            )
            if users:
                groups.append((None, setting, users))
    return groups


def _rule_chunks(users: list[TenantUser]) -> list[list[TenantUser]]:
    # One rule's `users` list holds at most limits.MAX_LIST_ITEMS entries.
    size = limits.MAX_LIST_ITEMS
    return [users[i : i + size] for i in range(0, len(users), size)]


def _render(
    snapshot: TenantSnapshot,
    tenant_name: str,
    policies: list[TenantPolicy],
    default_name: str | None,
    default_undeclared: bool,
    holders: dict[str, list[TenantUser]],
    relying_on_default: list[TenantUser],
    skipped: list[str],
    unlisted: list[str],
) -> str:
    direct_total = sum(len(v) for v in holders.values())
    lines: list[str] = []
    add = lines.append
    add(SCHEMA_HEADER)  # the schema is written beside the file (`export --out`)
    add(_comment(f"Exported by `authpolicy export` from tenant {tenant_name}."))
    add("# `authpolicy plan` against the same tenant shows no changes: this file declares the")
    add("# tenant exactly as it is. Edit it to say how it should be, then plan and apply.")
    add("#")
    add(_comment(f"Found: {_n(len(policies), 'policy')}, {_n(len(snapshot.users), 'user')}."))
    add(
        _comment(
            f"  {_n(direct_total, 'user', 'hold')} a policy directly (listed in the rules below)."
        )
    )
    if default_name is not None:
        add(
            _comment(
                f"  {_n(len(relying_on_default), 'user', 'rely')} on the default "
                f"({default_name}): no direct policy."
            )
        )
    else:
        add(
            _comment(
                f"  {_n(len(relying_on_default), 'user')} without any policy (no direct policy and "
                "no default): no policy blocks Basic auth for them."
            )
        )
    if skipped:
        add(
            _comment(
                f"  {_n(len(skipped), 'user')} could not be exported (see the end of the file)."
            )
        )
    for name in unlisted:
        add(
            _comment(
                f"  The {_n(len(holders[name]), 'direct holder')} of {name} are NOT listed: "
                "listing them would exceed the size limits of policies.yaml. `unmatched: ignore` "
                "leaves them as they are; replace the listing with group or attribute rules."
            )
        )
    add("")
    add("version: 1")
    if expressible("tenant", tenant_name):
        add(f"tenant: {yaml_scalar(tenant_name)}")
    else:
        add(_comment(f"tenant: left out: {tenant_name!r} is not a tenant GUID or domain"))
    add("")

    # ---------------------------------------------------------------- policies
    add("# Every tenant policy with all 12 switches: `allow` lists the protocols that keep Basic")
    add("# auth, every other protocol is blocked. Only SMTP AUTH still has an effect in Exchange")
    add("# Online; the other switches have had none since Microsoft retired them in 2022/2023.")
    if policies:
        add("policies:")
        for policy in policies:
            allow = _allow_list(policy.allow)
            count = len(holders.get(policy.name, ()))
            facts = [f"held directly by {_n(count, 'user')}"]
            if policy.name == default_name:
                facts.append("the organization default")
            if "smtp" in allow:
                facts.append("allows Basic SMTP AUTH")
            inert = [p for p in allow if not PROTOCOL_BY_NAME[p].still_effective]
            if inert:
                facts.append(f"{_n(len(inert), 'switch')} on with no effect since 2022/2023")
            add(_comment("; ".join(facts), 2))
            add(f"  {yaml_scalar(policy.name)}:")
            add(f"    allow: {yaml_scalar(allow)}")
    else:
        add("policies: {}")
    add("")
    add("remove_policies: []")
    add("prune_policies: false")
    add("")

    # ---------------------------------------------------------------- default
    if default_undeclared:
        add(
            _comment(
                f"The organization default ({snapshot.default_policy}) is a policy this file "
                "cannot declare"
            )
        )
        add("# (its name can't be written, or it no longer exists), so `default_policy` is left")
        add("# out: the plan leaves the default as it is.")
    elif default_name is not None:
        add(
            _comment(
                f"The organization default: it governs the {_n(len(relying_on_default), 'user')}"
            )
        )
        add("# with no direct policy.")
        add(f"default_policy: {yaml_scalar(default_name)}")
    else:
        add("# The tenant has no default policy. null declares that (and plans no change while the")
        add("# tenant has none); naming a declared policy here protects every user without a")
        add("# direct policy.")
        add("default_policy: null")
    add("")

    # ---------------------------------------------------------------- assignments
    add("assignments:")
    add("  # Users matched by no rule keep what they have: the users with no direct policy stay")
    add("  # on the default. `clear` would remove direct policies that no rule gives.")
    add("  unmatched: ignore")
    add(
        "  # Export changes nothing, so it does not turn on session revocation for you: set true to"
    )
    add("  # make future assignment changes effective within ~30 minutes instead of up to 24 hours")
    add("  # (it makes the affected users sign in again).")
    add("  revoke_sessions: false")
    add("  # One rule per policy that users hold directly (and per explicit mailbox SMTP AUTH")
    add("  # setting), listing them by exact UPN. Replace the lists with attribute or group")
    add("  # matches as you adopt rules.")
    groups = _rule_groups(policies, holders, unlisted, relying_on_default, snapshot)
    if groups:
        add("  rules:")
        for policy_name, setting, users in groups:
            chunks = _rule_chunks(users)
            label = f"direct: {policy_name}" if policy_name else "no direct policy"
            if setting:
                label += f", SMTP AUTH {setting}"
            held = f"{policy_name} directly" if policy_name else "no policy of their own"
            smtp = f" and SMTP AUTH {setting} on their mailbox" if setting else ""
            add(_comment(f"{_n(len(users), 'user', 'hold')} {held}{smtp}", 4))
            for number, chunk in enumerate(chunks, start=1):
                name = label
                if len(chunks) > 1:
                    name += f" (part {number} of {len(chunks)})"
                add(f"    - name: {yaml_scalar(name)}")
                add(f"      policy: {yaml_scalar(policy_name)}")
                if setting:
                    add(f"      smtp_auth: {setting}")
                add("      match:")
                add("        users:")
                lines.extend(f"        - {yaml_scalar(user.upn)}" for user in chunk)
    else:
        add("  rules: []")
    add("")

    # ---------------------------------------------------------------- SMTP AUTH
    if snapshot.smtp_org_read or snapshot.mailboxes_read:
        add("# SMTP AUTH (Set-TransportConfig, Set-CASMailbox): Basic SMTP works for a mailbox")
        add("# only when its policy allows smtp AND SMTP AUTH is on for it. Mailboxes with their")
        add("# own setting are listed in the rules above (smtp_auth); the others follow the org.")
        add("# when its policy allows smtp AND SMTP AUTH is on for it. Mailboxes with their own")
        add("# setting are listed in the rules above (smtp_auth); the others follow the org.")
        add("smtp_auth:")
        if snapshot.smtp_org is not None:
            add(f"  organization: {snapshot.smtp_org}")
        else:
            add("  # organization: left out: Get-TransportConfig does not show the switch")
            add("  # (Microsoft's service-side default applies); declare it to set it.")
        add("  unmatched: ignore                    # mailboxes no rule sets keep their setting")
        add("")

    # ---------------------------------------------------------------- safety
    add("safety:")
    add("  # Guards for the first edits after export: apply stops (exit 3) above them")
    add("  # unless run with --force.")
    add(f"  max_user_changes: {yaml_scalar(EXPORT_MAX_USER_CHANGES)}")
    add(f"  max_policy_deletes: {EXPORT_MAX_POLICY_DELETES}")

    if skipped:
        add("")
        add("# Not exported (left as they are by `unmatched: ignore`):")
        for line in skipped:
            add(_comment(f"  {line}"))
    return "\n".join(lines) + "\n"
