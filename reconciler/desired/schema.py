"""Validation against schema/policies.schema.json, with errors a person can act on.

jsonschema's own messages ("'smpt' is not one of [...]", "... is not valid under any of the
given schemas") are written for schema authors. Each error is translated here into one
line about the user's key, with a "did you mean" where a close spelling exists, and placed
at the key's line:column.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from reconciler.desired import limits
from reconciler.desired.problems import Finding, Path, describe_type, quoted, suggestion
from reconciler.desired.source import Document

_TYPE_WORDS = {
    "array": "a list",
    "object": "a mapping",
    "string": "a string",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "null": "null",
}
_PERCENT = re.compile(r"^-?[0-9]+(?:\.[0-9]+)?%$")


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package (the same file as schema/policies.schema.json)."""
    text = resources.files("reconciler").joinpath("schema/policies.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """`pattern` with ECMA-262's meaning of `$` (end of string).

    Python's `$` also matches before a final newline, so "Block\n" would pass
    `^[^\u0000-\u001f]*$`; `\\Z` is what the schema means.
    """
    if not isinstance(instance, str):
        return
    python_pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if not re.search(python_pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


@cache
def _validator() -> Any:
    return _Validator(load_schema())


@cache
def tenants_validator() -> Any:
    """The validator of tenants.yaml (schema/tenants.schema.json)."""
    text = resources.files("reconciler").joinpath("schema/tenants.schema.json").read_text("utf-8")
    return _Validator(json.loads(text))


def schema_findings(doc: Document, validator: Any = None) -> list[Finding]:
    """Every schema violation of the document (policies.yaml unless another `validator`), at
    most one per path."""
    found: dict[Path, Finding] = {}
    for error in (validator or _validator()).iter_errors(doc.data):
        for path, at_key, message in _translate(error, doc):
            if path not in found:
                found[path] = Finding(path, message, at_key=at_key)
    return list(found.values())


def _translate(error: ValidationError, doc: Document) -> Iterator[tuple[Path, bool, str]]:
    """(path, at_key, message) for one jsonschema error; some errors give several lines."""
    path: Path = tuple(error.absolute_path)
    value: Any = error.instance
    kind = str(error.validator)
    schema: Any = error.schema
    expected: Any = error.validator_value
    if "propertyNames" in error.absolute_schema_path:  # a bad policy name: the key is at fault
        yield (*path, value), True, _name_message(value, kind, "policy name")
        return
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        noun = "match key" if path and path[-1] in ("match", "except") else "key"
        for key in value:
            if key not in allowed:
                yield (*path, key), True, f"unknown {noun} {quoted(key)}" + suggestion(key, allowed)
        return
    if kind == "required":
        known = set(schema.get("properties", {}))
        misspelt = {_closest(key, known) for key in value if key not in known}
        for key in expected:
            # `allowed: [smtp]` is reported once, as an unknown key that means `allow`.
            if key not in value and key not in misspelt:
                yield (*path, key), False, _missing_message(path, key)
        return
    if kind == "uniqueItems":
        seen: dict[str, int] = {}
        for index, item in enumerate(value):
            if item in seen:
                what = "protocol" if path and path[-1] == "allow" else "value"
                yield (
                    (*path, index),
                    False,
                    f"{what} {quoted(item)} is listed twice (first at [{seen[item]}])",
                )
            else:
                seen[item] = index
        return
    if kind == "anyOf":
        yield from _translate_any_of(error, doc)
        return
    # An empty value (`key:` with nothing after it) is best shown at its key.
    yield path, value is None, _message(path, value, kind, expected)


def _closest(word: str, choices: set[str]) -> str | None:
    close = difflib.get_close_matches(word.casefold(), sorted(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _translate_any_of(error: ValidationError, doc: Document) -> Iterator[tuple[Path, bool, str]]:
    """Report the branch the value was evidently meant for, or say what was expected."""
    path: Path = tuple(error.absolute_path)
    value: Any = error.instance
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    # A branch "fits" when the value has its type: e.g. a mapping under `match` was meant to
    # be match keys, so the errors inside that branch are the ones worth showing.
    fitting = [
        errors
        for errors in branches.values()
        if not any(e.validator in ("type", "const") and not e.relative_path for e in errors)
    ]
    if len(fitting) == 1:
        for sub in fitting[0]:
            yield from _translate(sub, doc)
        return
    if path and path[-1] == "match":
        yield (
            path,
            False,
            f"must be 'all' or a mapping of match keys, got {_got(value)}",
        )
        return
    yield path, False, f"must be {_expected(path)}, got {_got(value)}"


def _shown(value: object) -> str:
    if isinstance(value, list | dict) or value is None:
        return ""
    return quoted(value)


def _got(value: object) -> str:
    """`a string 'x'`, `a list`, `null`: what the user wrote, for "must be X, got Y"."""
    return f"{describe_type(value)} {_shown(value)}".rstrip()


def _expected(path: Path) -> str:
    if path and path[0] == "safety":
        return "a count (0 or more) or a percentage like '10%'"
    return "a valid value"


def _missing_message(path: Path, key: str) -> str:
    if not path and key == "version":
        return "missing; write `version: 1` at the top of the file"
    if path[:2] == ("assignments", "rules"):
        hints = {
            "name": "every rule needs a unique name",
            "policy": "say which policy the rule assigns (null: no direct policy)",
            "match": "say which users the rule covers (`match: all` for everyone)",
        }
        return f"missing; {hints.get(key, 'required')}"
    if key == "allow":
        return "missing; list the protocols that keep Basic auth, or [] to block it everywhere"
    return "missing"


def _name_message(value: object, kind: str, noun: str) -> str:
    text = value if isinstance(value, str) else ""
    if kind == "minLength":
        return f"{noun} is empty"
    if kind == "maxLength":
        limit = limits.MAX_RULE_NAME if noun == "rule name" else limits.MAX_POLICY_NAME
        return f"{noun} is {len(text)} characters; the limit is {limit}"
    if kind == "pattern":
        bad = next((c for c in text if not c.isprintable() or c in "\u2028\u2029"), "?")
        return (
            f"{noun} {quoted(text)} contains a control character ({quoted(bad)[1:-1]}); "
            "newlines, tabs and other control characters are not allowed"
        )
    return f"{noun} must be a string, got {_got(value)}"


def _message(path: Path, value: Any, kind: str, expected: Any) -> str:
    last = path[-1] if path else None
    parent = path[-2] if len(path) >= 2 else None
    # Names of policies (in remove_policies, default_policy, a rule's policy) and of rules.
    is_policy_name = last in ("default_policy", "policy") or parent == "remove_policies"
    if is_policy_name and kind != "type":
        return _name_message(value, kind, "policy name")
    if last == "name" and path[:2] == ("assignments", "rules") and kind != "type":
        return _name_message(value, kind, "rule name")
    if kind == "type":
        words = (
            " or ".join(_TYPE_WORDS[t] for t in expected)
            if isinstance(expected, list)
            else _TYPE_WORDS.get(expected, expected)
        )
        hint = ""
        if last == "allow":
            hint = " of protocols, e.g. [smtp], or [] to block Basic auth everywhere"
        elif parent in ("policies",) and len(path) == 2:
            words, hint = "a mapping", " with `allow: [...]`"
        elif last == "except":
            words = "a mapping of match keys ('all' is not allowed in except)"
        if not path:
            words, hint = "a mapping", " of settings (`version: 1`, `policies:`, ...)"
        wants_text = "string" in (expected if isinstance(expected, list) else [expected])
        if wants_text and isinstance(value, int | float) and not isinstance(value, bool):
            return f"must be {words}, got {_got(value)}; write it in quotes to mean the text"
        return f"must be {words}{hint}, got {_got(value)}"
    if kind == "enum":
        choices = [str(c) for c in expected]
        if parent == "allow":
            return f"unknown protocol {quoted(value)}" + (
                suggestion(str(value), choices) or f"; protocols are: {', '.join(choices)}"
            )
        listed = ", ".join(quoted(c) for c in choices)
        return f"{quoted(value)} is not one of {listed}" + suggestion(str(value), choices)
    if kind == "const":
        if path == ("version",):
            return f"unsupported version {quoted(value)}; this authpolicy reads version 1"
        return f"must be {quoted(expected)}"
    if kind == "minItems":
        return "is empty, so it would match nobody; list at least one value or remove the key"
    if kind == "minProperties":
        if last == "except":
            return "has no match keys; remove `except` or add keys"
        return "has no match keys; write `match: all` to match everyone, or add keys"
    if kind == "minimum":
        return f"must be {expected} or more, got {_shown(value)}"
    if kind == "maximum":
        if last == "days":
            return (
                f"must be {expected} or less, got {_shown(value)}; the Entra sign-in log keeps "
                f"{expected} days"
            )
        return f"must be {expected} or less, got {_shown(value)}"
    if kind == "maxLength":
        return f"is {len(str(value))} characters; the limit is {expected}"
    if kind == "minLength":
        return "is empty; write a value or leave the key out"
    if kind in ("maxItems", "maxProperties"):
        return f"has more than {expected} entries; that is the limit"
    if kind == "pattern":
        return _pattern_message(path, value)
    return f"is not valid here ({kind})"


def _pattern_message(path: Path, value: object) -> str:
    text = str(value)
    if path == ("tenant",):
        return (
            f"{quoted(text)} is not a tenant ID: use the tenant GUID or a domain such as "
            "contoso.onmicrosoft.com"
        )
    if path and path[0] == "safety":
        if _PERCENT.match(text):
            number = float(text[:-1])
            if number < 0:
                return f"{quoted(text)} is negative; use a percentage from 0% to 100%"
            return f"{quoted(text)} is over 100%"
        return f"{quoted(text)} is not a count or a percentage like '10%'"
    if not text or any(not c.isprintable() for c in text):
        return f"{quoted(text)} contains a control character; they are not allowed"
    key = path[-2] if len(path) >= 2 else None
    if path and path[-1] == "expires":
        return f"{quoted(text)} is not a date: write the UTC date as YYYY-MM-DD, e.g. 2027-03-31"
    if key == "users":
        return f"{quoted(text)} is not a user principal name like ann@contoso.com"
    if key == "upn":
        return f"{quoted(text)} is not a UPN pattern: it must not contain spaces"
    if key == "domain":
        return f"{quoted(text)} is not a domain name like contoso.com"
    return f"{quoted(text)} is not allowed here"
