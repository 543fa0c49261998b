"""The small OPATH subset the emulator's Get-* cmdlets understand.

Grammar (case-insensitive operators, like Exchange):
    expr   := term (("-and" | "-or") term)*        -and binds tighter than -or
    term   := "-not" term | "(" expr ")" | PROPERTY OP VALUE
    OP     := -eq | -ne | -like | -notlike
    VALUE  := 'text' | "text" | $null | $true | $false | bareword
An optional outer pair of braces ({ ... }) is accepted. Anything else is Exchange's
"Invalid filter syntax" error, with the position where parsing stopped.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from reconciler.emulator.wire import CmdletError, invalid_filter

Predicate = Callable[[dict[str, Any]], bool]
# property name (lowercase) -> (canonical name, getter of the comparable value)
Getters = dict[str, tuple[str, Callable[[dict[str, Any]], Any]]]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lp>\() | (?P<rp>\)) |
        (?P<op>-(?:and|or|not|eq|ne|like|notlike|ceq|cne)\b) |
        '(?P<sq>(?:[^']|'')*)' |
        "(?P<dq>(?:[^"]|"")*)" |
        (?P<var>\$(?:null|true|false)\b) |
        (?P<word>[A-Za-z0-9_.@*\-]+)
    )""",
    re.VERBOSE | re.IGNORECASE,
)

_NULL = object()


class _Parser:
    def __init__(self, text: str, getters: Getters) -> None:
        self.text = text
        self.getters = getters
        self.tokens: list[tuple[str, Any, int]] = []
        body = text.strip()
        offset = text.find(body) if body else 0
        if body.startswith("{") and body.endswith("}"):
            body, offset = body[1:-1], offset + 1
        pos = 0
        while pos < len(body):
            if body[pos:].strip() == "":
                break
            match = _TOKEN.match(body, pos)
            start = pos + len(body[pos:]) - len(body[pos:].lstrip())  # first non-blank
            if match is None or match.end() == pos:
                raise invalid_filter(text, offset + start)
            kind = match.lastgroup or ""
            raw = match.group(kind)
            if kind == "sq":
                raw = raw.replace("''", "'")
            elif kind == "dq":
                raw = raw.replace('""', '"')
            elif kind == "op" or kind == "var":
                raw = raw.lower()
            self.tokens.append((kind, raw, offset + start))
            pos = match.end()
        self.end = len(text)
        self.index = 0

    def peek(self) -> tuple[str, Any, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, Any, int]:
        token = self.peek()
        if token is None:
            raise invalid_filter(self.text, self.end)
        self.index += 1
        return token

    def parse(self) -> Predicate:
        if not self.tokens:
            raise invalid_filter(self.text, 0)
        predicate = self.expr()
        leftover = self.peek()
        if leftover is not None:
            raise invalid_filter(self.text, leftover[2])
        return predicate

    def expr(self) -> Predicate:
        left = self.conjunction()
        while (token := self.peek()) is not None and token[:2] == ("op", "-or"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.term()
        while (token := self.peek()) is not None and token[:2] == ("op", "-and"):
            self.take()
            right = self.term()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def term(self) -> Predicate:
        kind, raw, pos = self.take()
        if kind == "op" and raw == "-not":
            inner = self.term()
            return lambda r: not inner(r)
        if kind == "lp":
            inner = self.expr()
            closing = self.take()
            if closing[0] != "rp":
                raise invalid_filter(self.text, closing[2])
            return inner
        if kind != "word":
            raise invalid_filter(self.text, pos)
        prop = self.getters.get(raw.lower())
        if prop is None:
            raise CmdletError(
                400,
                "BadRequest",
                "Error executing cmdlet",
                "System.Management.Automation.ParameterBindingException",
                "Cannot bind parameter 'Filter' to the target. Exception setting \"Filter\": "
                f"\"'{raw}' is not a recognized filterable property. For a description of the "
                'filter parameter syntax see the command help."',
            )
        op_kind, op, op_pos = self.take()
        if op_kind != "op" or op not in ("-eq", "-ne", "-like", "-notlike", "-ceq", "-cne"):
            raise invalid_filter(self.text, op_pos)
        value_kind, value, value_pos = self.take()
        if value_kind == "var":
            literal: Any = {"$null": _NULL, "$true": "true", "$false": "false"}[value]
        elif value_kind in ("sq", "dq", "word"):
            literal = value
        else:
            raise invalid_filter(self.text, value_pos)
        return _comparison(prop[1], op, literal)


def _normalise(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def _comparison(getter: Callable[[dict[str, Any]], Any], op: str, literal: Any) -> Predicate:
    if literal is _NULL:
        if op in ("-eq", "-ceq", "-like"):
            return lambda r: _normalise(getter(r)) is None
        return lambda r: _normalise(getter(r)) is not None
    target = str(literal).lower()
    if op in ("-like", "-notlike"):
        pattern = re.compile(fnmatch.translate(target).replace("(?s:", "(?is:"))
        positive = op == "-like"
        return lambda r: (bool(pattern.match(_normalise(getter(r)) or ""))) is positive
    if "*" in target and op in ("-eq", "-ne"):
        # Exchange allows wildcards in -eq for some properties (e.g. AuthenticationPolicy DN).
        pattern = re.compile(fnmatch.translate(target))
        positive = op == "-eq"
        return lambda r: (bool(pattern.match(_normalise(getter(r)) or ""))) is positive
    if op in ("-eq", "-ceq"):
        return lambda r: _normalise(getter(r)) == target
    return lambda r: _normalise(getter(r)) != target


def compile_filter(text: Any, getters: Getters) -> Predicate:
    """Compile an OPATH filter string into a predicate over records."""
    if not isinstance(text, str):
        raise invalid_filter(str(text), 0)
    return _Parser(text, getters).parse()


def field_getters(names: list[str]) -> Getters:
    """Getters that read record[name] for each name."""
    return {name.lower(): (name, (lambda n: lambda r: r.get(n))(name)) for name in names}
