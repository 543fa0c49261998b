"""Checks the schema cannot express: names that must agree across the file, rule order.

Runs after schema validation on the same plain data and skips every value the schema already
rejected (`skip`), so one mistake gives one message.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable, Mapping
from functools import cache

from reconciler.desired import limits
from reconciler.desired.problems import Finding, Path, quoted, suggestion
from reconciler.desired.source import Document

# Get-User -RecipientTypeDetails values (reference/exo-authpolicy-semantics.md §3.3).
RECIPIENT_TYPES: tuple[str, ...] = (
    "DisabledUser",
    "DiscoveryMailbox",
    "EquipmentMailbox",
    "GuestMailUser",
    "GroupMailbox",
    "LegacyMailbox",
    "LinkedMailbox",
    "LinkedRoomMailbox",
    "LinkedUser",
    "MailUser",
    "PublicFolderMailbox",
    "RemoteEquipmentMailbox",
    "RemoteRoomMailbox",
    "RemoteSharedMailbox",
    "RemoteTeamMailbox",
    "RemoteUserMailbox",
    "RoomMailbox",
    "SchedulingMailbox",
    "SharedMailbox",
    "SharedWithMailUser",
    "TeamMailbox",
    "User",
    "UserMailbox",
)
RECIPIENT_TYPE_BY_FOLDED: Mapping[str, str] = {t.casefold(): t for t in RECIPIENT_TYPES}

Skip = Callable[[Path], bool]


def semantic_findings(doc: Document, skip: Skip) -> list[Finding]:
    """Cross-reference and ordering problems; `skip(path)` is true for values already reported."""
    data = doc.data
    if not isinstance(data, dict):
        return []
    findings: list[Finding] = []
    declared = _declared_policies(doc, data, skip, findings)
    removed = _removed_policies(data, declared, doc, skip, findings)
    if "default_policy" in data and not skip(("default_policy",)):
        name = data["default_policy"]
        if isinstance(name, str):
            problem = _reference_problem(name, declared, removed)
            if problem:
                findings.append(Finding(("default_policy",), problem))
    assignments = data.get("assignments")
    if isinstance(assignments, dict):
        _check_recipient_types(assignments, ("assignments",), skip, findings, "recipient_types")
    rules = assignments.get("rules") if isinstance(assignments, dict) else None
    if isinstance(rules, list) and not skip(("assignments", "rules")):
        _check_rules(rules, declared, removed, doc, skip, findings)
    return findings


def _declared_policies(
    doc: Document, data: dict[str, object], skip: Skip, findings: list[Finding]
) -> dict[str, str]:
    """casefolded name -> name as written, for every declared policy."""
    declared: dict[str, str] = {}
    policies = data.get("policies")
    if not isinstance(policies, dict) or skip(("policies",)):
        return declared
    looks: dict[str, str] = {}
    for name in policies:
        path: Path = ("policies", name)
        folded = name.casefold()
        if not skip(path) and (not name.strip() or name != name.strip()):
            findings.append(
                Finding(
                    path,
                    f"policy name {quoted(name)} is blank or starts or ends with white space; "
                    "write the name without it (Exchange trims names, so the policy would not "
                    "be found by the name written here)",
                    at_key=True,
                )
            )
        units = len(name.encode("utf-16-le")) // 2
        if not skip(path) and len(name) <= limits.MAX_POLICY_NAME < units:
            # Exchange (.NET) counts UTF-16 code units: a character outside the BMP (an emoji)
            # counts twice there, once in Python and in JSON Schema.
            findings.append(
                Finding(
                    path,
                    f"policy name {quoted(name)} is {units} characters as Exchange counts them "
                    f"(UTF-16 code units; {len(name)} code points); the limit is "
                    f"{limits.MAX_POLICY_NAME}",
                    at_key=True,
                )
            )
        look = look_alike_key(name)
        if (
            folded not in declared
            and look in looks
            and not skip(path)
            and looks[look].casefold() != folded
        ):
            first = looks[look]
            line = doc.key_position(("policies", first))[0]
            findings.append(
                Finding(
                    path,
                    f"policy {quoted(name)} looks like {quoted(first)} (line {line}) but is a "
                    f"different name ({code_points(name, first)}); use one spelling",
                    at_key=True,
                )
            )
        looks.setdefault(look, name)
        if folded in declared and not skip(path):
            first = declared[folded]
            line = doc.key_position(("policies", first))[0]
            findings.append(
                Finding(
                    path,
                    f"policy {quoted(name)} is the same name as {quoted(first)} (line {line}); "
                    "policy names are compared case-insensitively",
                    at_key=True,
                )
            )
        declared.setdefault(folded, name)
    return declared


def look_alike_key(name: str) -> str:
    """What two names that render the same share: NFKC (composed and compatibility forms,
    a non-breaking space as a space), case folded, runs of white space as one space, and
    every character Unicode lists as confusable with a Latin one (Cyrillic о, Greek Α...)
    replaced by it (the confusables data of confusable-homoglyphs). Detection only: matching
    a name to a tenant object stays Exchange's case-insensitive comparison."""
    folded = " ".join(unicodedata.normalize("NFKC", name).casefold().split())
    if folded.isascii():
        return folded
    return "".join(_latin_look_alike(c) for c in folded).casefold()


@cache
def _latin_look_alike(char: str) -> str:
    """The Latin character `char` is confusable with, or `char` itself."""
    if char.isascii():
        return char
    # Loaded on the first non-ASCII name only: the table costs ~25 ms to load, and most files
    # are ASCII (start-up of `validate`).
    from confusable_homoglyphs import confusables

    for glyph in confusables.confusables_data.get(char, ()):
        candidate = glyph.get("c", "")
        if candidate.isascii() and candidate.strip():
            return str(candidate)
    return char


def code_points(name: str, other: str) -> str:
    """The characters where two look-alike names differ, as U+XXXX."""
    diff = [c for c in name if c not in other] or [c for c in other if c not in name]
    shown = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(diff))
    return f"differs in {shown}" if shown else "differs in its Unicode form (NFC/NFD)"


def _removed_policies(
    data: dict[str, object],
    declared: dict[str, str],
    doc: Document,
    skip: Skip,
    findings: list[Finding],
) -> dict[str, str]:
    removed: dict[str, str] = {}
    names = data.get("remove_policies")
    if not isinstance(names, list) or skip(("remove_policies",)):
        return removed
    first_index: dict[str, int] = {}
    for index, name in enumerate(names):
        path: Path = ("remove_policies", index)
        if not isinstance(name, str) or skip(path):
            continue
        folded = name.casefold()
        if folded in first_index:
            findings.append(
                Finding(path, f"{quoted(name)} is listed twice (first at [{first_index[folded]}])")
            )
            continue
        first_index[folded] = index
        if folded in declared:
            line = doc.key_position(("policies", declared[folded]))[0]
            findings.append(
                Finding(
                    path,
                    f"policy {quoted(name)} is declared in policies (line {line}) and also listed "
                    "in remove_policies; keep it or remove it, not both",
                )
            )
            continue
        removed[folded] = name
    return removed


def _reference_problem(name: str, declared: dict[str, str], removed: dict[str, str]) -> str:
    """Why `name` cannot be used as an assigned policy, or '' when it can."""
    folded = name.casefold()
    if folded in declared:
        return ""
    if folded in removed:
        return f"policy {quoted(name)} is listed in remove_policies, so it cannot be assigned"
    return f"policy {quoted(name)} is not declared in policies" + suggestion(
        name, declared.values()
    )


def _check_rules(
    rules: list[object],
    declared: dict[str, str],
    removed: dict[str, str],
    doc: Document,
    skip: Skip,
    findings: list[Finding],
) -> None:
    base: Path = ("assignments", "rules")
    first_line: dict[str, int] = {}
    unreachable_reported = False
    globs = 0
    for index, rule in enumerate(rules):
        path: Path = (*base, index)
        if not isinstance(rule, dict) or skip(path):
            continue
        name = rule.get("name")
        if isinstance(name, str) and not skip((*path, "name")):
            folded = name.casefold()
            if folded in first_line:
                findings.append(
                    Finding(
                        (*path, "name"),
                        f"rule name {quoted(name)} is already used on line {first_line[folded]}",
                    )
                )
            else:
                first_line[folded] = doc.position((*path, "name"))[0]
        policy = rule.get("policy")
        if isinstance(policy, str) and not skip((*path, "policy")):
            problem = _reference_problem(policy, declared, removed)
            if problem:
                findings.append(Finding((*path, "policy"), problem))
        for key in ("match", "except"):
            spec = rule.get(key)
            if isinstance(spec, dict):
                _check_recipient_types(spec, (*path, key), skip, findings)
                patterns = spec.get("upn")
                if isinstance(patterns, list) and not skip((*path, key, "upn")):
                    for number, pattern in enumerate(patterns):
                        if not isinstance(pattern, str):
                            continue
                        globs += 1
                        where: Path = (*path, key, "upn", number)
                        issue = _glob_problem(pattern)
                        if globs == limits.MAX_GLOBS + 1:
                            issue = (
                                f"more than {limits.MAX_GLOBS} upn globs in the file; that is the "
                                "glob budget (every user's UPN is tried against every glob): "
                                "list people in `users`, or match on a group or an attribute"
                            )
                        if issue:
                            findings.append(Finding(where, issue))
        expires = rule.get("expires")
        if (
            isinstance(expires, str)
            and not skip((*path, "expires"))
            and parse_date(expires) is None
        ):
            findings.append(
                Finding(
                    (*path, "expires"),
                    f"{quoted(expires)} is not a calendar date; write a real UTC date as "
                    "YYYY-MM-DD, e.g. 2027-03-31",
                )
            )
        is_catch_all = rule.get("match") == "all" and "except" not in rule
        if is_catch_all and index < len(rules) - 1 and not unreachable_reported:
            unreachable_reported = True
            later = [_rule_label(r, i) for i, r in enumerate(rules) if i > index]
            findings.append(
                Finding(
                    (*path, "match"),
                    "`match: all` without `except` matches every user, so the rules after it "
                    f"can never match: {', '.join(later)}; move this rule to the end",
                )
            )


def _glob_problem(pattern: str) -> str | None:
    """An upn glob that can never match as meant (an unclosed `[`), or one over the budget."""
    stars = pattern.count("*")
    if stars > limits.MAX_GLOB_STARS:
        return (
            f"{quoted(pattern)} has {stars} '*'; the glob budget is {limits.MAX_GLOB_STARS} per "
            "glob: one '*' stands for any text already"
        )
    index = 0
    while index < len(pattern):
        if pattern[index] == "[":
            # fnmatch's reading: a set runs to the first ']' after an optional '!' and a
            # leading ']'; without one, '[' is a plain character and the glob means another thing.
            end = index + 1
            if end < len(pattern) and pattern[end] == "!":
                end += 1
            if end < len(pattern) and pattern[end] == "]":
                end += 1
            while end < len(pattern) and pattern[end] != "]":
                end += 1
            if end >= len(pattern):
                return (
                    f"{quoted(pattern)} has an unclosed '[': a set of characters needs its ']' "
                    "(e.g. scanner-[0-9]*@contoso.com); write [[] for a literal '['"
                )
            index = end
        index += 1
    return None


def parse_date(text: str) -> dt.date | None:
    """A YYYY-MM-DD date, or None when it is not one (2027-02-30)."""
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _rule_label(rule: object, index: int) -> str:
    if isinstance(rule, dict) and isinstance(rule.get("name"), str) and rule["name"]:
        return quoted(rule["name"])
    return f"rules[{index}]"


def _check_recipient_types(
    spec: dict[str, object],
    path: Path,
    skip: Skip,
    findings: list[Finding],
    key: str = "recipient_type",
) -> None:
    values = spec.get(key)
    if not isinstance(values, list) or skip((*path, key)):
        return
    for index, value in enumerate(values):
        item: Path = (*path, key, index)
        if not isinstance(value, str) or skip(item):
            continue
        if value.casefold() not in RECIPIENT_TYPE_BY_FOLDED:
            hint = suggestion(value, RECIPIENT_TYPES) or (
                "; see Get-User -RecipientTypeDetails for the values"
            )
            findings.append(Finding(item, f"unknown recipient type {quoted(value)}{hint}"))
