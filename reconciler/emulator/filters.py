"""The small OPATH subset the emulator's Get-* cmdlets understand.

Grammar (case-insensitive operators, like Exchange):
    expr   := term (("-and" | "-or") term)*        -and binds tighter than -or
    term   := "-not" term | "(" expr ")" | PROPERTY OP VALUE
    OP     := -eq | -ne | -like | -notlike
    VALUE  := 'text' | "text" | $null | $true | $false | bareword
An optional outer pair of braces ({ ... }) is accepted. Anything else is Exchange's
"Invalid filter syntax" error, with the position where parsing stopped.

A filter built only of `UserPrincipalName -like 'prefix*'` comparisons joined by -and, -or and
-not (what a partitioned read sends) also compiles to ranges of a sorted index of the UPNs
(`PrefixIndex`), so the emulator answers it in O(matches + log n) rather than testing every
user: the emulator, not the client, must not be the limit of a benchmark of partitioned reads.
The ranges select exactly what the predicate selects (tested side by side).
"""

from __future__ import annotations

import bisect
import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.emulator.wire import CmdletError, invalid_filter

Predicate = Callable[[dict[str, Any]], bool]
# property name (lowercase) -> (canonical name, getter of the comparable value)
Getters = dict[str, tuple[str, Callable[[dict[str, Any]], Any]]]
# Half-open intervals [start, stop) of a PrefixIndex, sorted and disjoint.
Ranges = list[tuple[int, int]]
# What a filter selects of an index, or None when the filter is not only UPN prefixes.
RangePlan = Callable[["PrefixIndex"], Ranges] | None
_WILDCARDS = frozenset("*?[]")


class PrefixIndex:
    """The records sorted by one property (lowercase, as filters compare), to find the records
    whose value starts with a prefix by bisection. `select` returns them in the records' own
    order, so an indexed answer is the scan's answer, item for item."""

    def __init__(self, records: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], Any]):
        entries = sorted(
            ((_normalise(key(record)) or "", rank) for rank, record in enumerate(records))
        )
        self.keys = [k for k, _ in entries]
        self.ranks = [rank for _, rank in entries]
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.keys)

    def prefix(self, text: str) -> Ranges:
        if not text:
            return [(0, len(self.keys))]
        start = bisect.bisect_left(self.keys, text)
        if ord(text[-1]) == 0x10FFFF:  # pragma: no cover - no UPN ends so
            stop = len(self.keys)
        else:
            stop = bisect.bisect_left(self.keys, text[:-1] + chr(ord(text[-1]) + 1), start)
        return [(start, stop)] if stop > start else []

    def select(self, ranges: Ranges) -> list[dict[str, Any]]:
        ranks = sorted(rank for start, stop in ranges for rank in self.ranks[start:stop])
        return [self.records[rank] for rank in ranks]


def _union(a: Ranges, b: Ranges) -> Ranges:
    out: Ranges = []
    for start, stop in sorted(a + b):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def _complement(a: Ranges, size: int) -> Ranges:
    out: Ranges = []
    position = 0
    for start, stop in a:
        if start > position:
            out.append((position, start))
        position = max(position, stop)
    if position < size:
        out.append((position, size))
    return out


def _intersection(a: Ranges, b: Ranges, size: int) -> Ranges:
    return _complement(_union(_complement(a, size), _complement(b, size)), size)


def _or(a: RangePlan, b: RangePlan) -> RangePlan:
    if a is None or b is None:
        return None
    return lambda index: _union(a(index), b(index))


def _and(a: RangePlan, b: RangePlan) -> RangePlan:
    if a is None or b is None:
        return None
    return lambda index: _intersection(a(index), b(index), len(index))


def _not(a: RangePlan) -> RangePlan:
    if a is None:
        return None
    return lambda index: _complement(a(index), len(index))


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
    def __init__(self, text: str, getters: Getters, indexed: str = "UserPrincipalName") -> None:
        self.text = text
        self.getters = getters
        self.indexed = indexed
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

    def parse(self) -> tuple[Predicate, RangePlan]:
        if not self.tokens:
            raise invalid_filter(self.text, 0)
        compiled = self.expr()
        leftover = self.peek()
        if leftover is not None:
            raise invalid_filter(self.text, leftover[2])
        return compiled

    def expr(self) -> tuple[Predicate, RangePlan]:
        left, plan = self.conjunction()
        while (token := self.peek()) is not None and token[:2] == ("op", "-or"):
            self.take()
            right, right_plan = self.conjunction()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
            plan = _or(plan, right_plan)
        return left, plan

    def conjunction(self) -> tuple[Predicate, RangePlan]:
        left, plan = self.term()
        while (token := self.peek()) is not None and token[:2] == ("op", "-and"):
            self.take()
            right, right_plan = self.term()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
            plan = _and(plan, right_plan)
        return left, plan

    def term(self) -> tuple[Predicate, RangePlan]:
        kind, raw, pos = self.take()
        if kind == "op" and raw == "-not":
            inner, plan = self.term()
            return (lambda r: not inner(r)), _not(plan)
        if kind == "lp":
            inner_compiled = self.expr()
            closing = self.take()
            if closing[0] != "rp":
                raise invalid_filter(self.text, closing[2])
            return inner_compiled
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
        leaf_plan: RangePlan = None
        if (
            prop[0] == self.indexed
            and op == "-like"
            and isinstance(literal, str)
            and literal.endswith("*")
            and not _WILDCARDS & set(literal[:-1])
        ):
            leaf_plan = (lambda text: lambda index: index.prefix(text))(literal[:-1].lower())
        return _comparison(prop[1], op, literal), leaf_plan


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
    return _Parser(text, getters).parse()[0]


def compile_indexed(
    text: Any, getters: Getters, indexed: str = "UserPrincipalName"
) -> tuple[Predicate, RangePlan]:
    """The predicate of an OPATH filter, and its ranges of a PrefixIndex by `indexed` when the
    filter is built only of `<indexed> -like 'prefix*'` (else None: test every record)."""
    if not isinstance(text, str):
        raise invalid_filter(str(text), 0)
    return _Parser(text, getters, indexed).parse()


def field_getters(names: list[str]) -> Getters:
    """Getters that read record[name] for each name."""
    return {name.lower(): (name, (lambda n: lambda r: r.get(n))(name)) for name in names}
