"""Reading policies.yaml: bytes -> text -> plain data, remembering where every value was written.

PyYAML's own loaders lose positions, silently keep the last of two duplicate keys, expand
aliases (the "billion laughs" bomb) and read `no` as false (the "Norway problem"). So this
module drives PyYAML's parser itself and builds plain Python data in one pass:

* every value's line:column (and every mapping key's) is kept in a map keyed by its path;
* duplicate keys, aliases and unknown tags are reported, never resolved silently;
* plain scalars resolve like YAML 1.2: only `true`/`false` are booleans, `yes`, `no`, `on`,
  `off` and dates stay strings;
* size, nesting and list lengths are capped (`limits`) while parsing, so a huge or deeply
  nested file is refused before it costs memory or time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import events
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner

from reconciler.desired import limits
from reconciler.desired.problems import (
    DOCUMENT,
    Finding,
    Path,
    Problem,
    printable,
    quoted,
    render_path,
)

_CParser: Any
try:  # libyaml's event parser, when PyYAML was built with it
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - depends on the PyYAML build
    _CParser = None

Position = tuple[int, int]  # 1-based line, column

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# Characters YAML refuses (yaml.reader.Reader.NON_PRINTABLE), found before parsing so the
# error can name the line and column instead of a character offset.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)

# YAML 1.2 core-schema resolution of plain (unquoted) scalars.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")

_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_TAG_PREFIX = "tag:yaml.org,2002:"
_REPARSE_LIMIT = 256 * 1024  # re-read broken files up to this size for a portable message
_SCALAR_TAGS = {"str", "int", "float", "bool", "null"}
MAX_INTEGER_DIGITS = 15  # every count and limit in policies.yaml fits; a float holds it exactly


@dataclass
class Document:
    """policies.yaml as plain data (dicts, lists, str, int, float, bool, None) plus positions."""

    data: object
    values: dict[Path, Position] = field(default_factory=dict)  # where each value starts
    keys: dict[Path, Position] = field(default_factory=dict)  # where each mapping key is
    problems: list[Finding] = field(default_factory=list)  # found while reading
    # Paths whose value was dropped or replaced because of a reading problem: later checks
    # skip them so one cause gives one message.
    broken: set[Path] = field(default_factory=set)

    def position(self, path: Path) -> Position:
        """Where the value at `path` (or its nearest written ancestor) starts."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key_position(self, path: Path) -> Position:
        """Where the key naming `path` is written (falls back to the value's position)."""
        return self.keys.get(path) or self.position(path)


class FileProblem(Exception):
    """The file cannot be read as YAML at all: one problem, nothing else is checked."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def reads_as_non_string(text: str) -> bool:
    """Would this loader read `text`, written as a plain scalar, as null, a bool or a number?"""
    return bool(_NULL.match(text) or text in _BOOL or _INT.match(text) or _FLOAT.match(text))


def decode(data: bytes) -> str:
    """The file's bytes as text. UTF-8 only; a UTF-8 byte-order mark is accepted and dropped."""
    if len(data) > limits.MAX_FILE_BYTES:
        raise FileProblem(
            Problem(
                1,
                1,
                DOCUMENT,
                f"the file is {len(data):,} bytes; "
                f"the limit is {limits.MAX_FILE_BYTES:,} bytes (5 MiB)",
            )
        )
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    elif data.startswith(_UTF16_BOMS):
        raise FileProblem(Problem(1, 1, DOCUMENT, "the file is UTF-16; save it as UTF-8"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        raise FileProblem(
            Problem(
                line,
                column,
                DOCUMENT,
                f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
                "policies.yaml must be a UTF-8 text file",
            )
        ) from None
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line, column = _line_column(text, bad.start())
        what = (
            "a NUL byte: this looks like a binary file, not YAML"
            if bad.group() == "\0"
            else (f"control character U+{ord(bad.group()):04X}, which YAML does not allow")
        )
        raise FileProblem(Problem(line, column, DOCUMENT, f"the file contains {what}"))
    return text


def parse(text: str) -> Document:
    """Parse YAML text into a Document. Raises FileProblem when it is not usable YAML."""
    try:
        return _Composer(_event_source(text)).document()
    except yaml.MarkedYAMLError as exc:
        raise FileProblem(_syntax_problem(text, _portable_error(text, exc))) from None
    except yaml.YAMLError as exc:  # errors without a position (rare: reader errors)
        message = f"not valid YAML: {printable(str(exc))}"
        raise FileProblem(Problem(1, 1, DOCUMENT, message)) from None


def _event_source(text: str) -> Any:
    """A YAML event parser: libyaml's when PyYAML has it (about 50 times faster), else PyYAML's."""
    if _CParser is not None:
        return _CParser(text)
    return _Parser(text)


def _portable_error(text: str, exc: yaml.MarkedYAMLError) -> yaml.MarkedYAMLError:
    """The same syntax error as PyYAML's pure-Python parser words it.

    libyaml and PyYAML word errors differently; re-reading a small broken file with the
    Python parser gives the same message on every machine. Large files keep libyaml's.
    """
    if _CParser is None or len(text) > _REPARSE_LIMIT:
        return exc
    parser = _Parser(text)
    try:
        while parser.get_event() is not None and not parser.check_event(events.StreamEndEvent):
            pass
    except yaml.MarkedYAMLError as python_error:
        return python_error
    return exc


def _line_column(text: str, offset: int) -> Position:
    """1-based line and column of `offset`, counting line breaks as YAML does."""
    breaks = list(_LINE_BREAK.finditer(text, 0, offset))
    line_start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, offset - line_start + 1


def _syntax_problem(text: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    # A tab in indentation is the usual cause of "cannot start any token"; say so directly.
    rows = _LINE_BREAK.split(text)
    row = rows[line - 1] if 0 < line <= len(rows) else ""
    indent = row[: len(row) - len(row.lstrip(" \t"))]
    if "'\\t'" in (exc.problem or "") or "\t" in indent:
        if "\t" in indent:
            column = indent.index("\t") + 1
        return Problem(
            line, column, DOCUMENT, "a tab is used for indentation; YAML allows only spaces there"
        )
    message = exc.problem or "invalid YAML"
    if exc.context:
        message = f"{message} ({exc.context}"
        if exc.context_mark and exc.context_mark is not mark:
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    return Problem(line, column, DOCUMENT, f"YAML syntax error: {printable(message)}")


def _over_limit(limit: int, noun: str) -> str:
    return f"more than {limit:,} {noun}; that is the limit (see docs/configuration.md, Limits)"


class _Parser(Reader, Scanner, Parser):
    """PyYAML's pure-Python event parser, with a cap on flow nesting (`[[[[...`), which its
    scanner otherwise handles in quadratic time."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= limits.MAX_DEPTH:
            mark = self.get_mark()
            raise FileProblem(
                Problem(
                    mark.line + 1,
                    mark.column + 1,
                    DOCUMENT,
                    f"nested more than {limits.MAX_DEPTH} levels deep",
                )
            )
        super().fetch_flow_collection_start(TokenClass)


class _Composer:
    """Turns parser events into plain data, recording positions and refusing what we don't take."""

    def __init__(self, event_source: Any) -> None:
        self._events = event_source
        self._doc = Document(data=None)
        self._nodes = 0

    def document(self) -> Document:
        ev = self._events
        ev.get_event()  # StreamStart
        if ev.check_event(events.StreamEndEvent):
            raise FileProblem(
                Problem(1, 1, DOCUMENT, "the file is empty; expected `version: 1` and policies")
            )
        ev.get_event()  # DocumentStart
        self._doc.data = self._value((), 0)
        ev.get_event()  # DocumentEnd
        if not ev.check_event(events.StreamEndEvent):
            mark = ev.peek_event().start_mark
            raise FileProblem(
                Problem(
                    mark.line + 1,
                    mark.column + 1,
                    DOCUMENT,
                    "a second YAML document ('---') is not allowed; keep one document per file",
                )
            )
        return self._doc

    def _problem(self, mark: Any, where: str, message: str) -> Problem:
        return Problem(mark.line + 1, mark.column + 1, where, message)

    def _note(self, mark: Any, path: Path, message: str, *, broken: bool = False) -> None:
        """Record a problem that does not stop reading.

        `broken`: the value at `path` was dropped, so later checks must skip it.
        """
        self._doc.problems.append(Finding(path, message, position=(mark.line + 1, mark.column + 1)))
        if broken:
            self._doc.broken.add(path)

    def _fatal(self, mark: Any, message: str, path: Path = ()) -> FileProblem:
        return FileProblem(self._problem(mark, render_path(path), message))

    def _value(self, path: Path, depth: int) -> object:
        ev = self._events
        event = ev.peek_event()
        if isinstance(event, events.AliasEvent):
            raise self._alias(event, path)
        self._nodes += 1
        if self._nodes > limits.MAX_NODES:
            raise self._too_many(event.start_mark, path)
        if depth > limits.MAX_DEPTH:
            raise self._fatal(
                event.start_mark, f"nested more than {limits.MAX_DEPTH} levels deep", path
            )
        self._doc.values[path] = (event.start_mark.line + 1, event.start_mark.column + 1)
        if isinstance(event, events.ScalarEvent):
            ev.get_event()
            return self._scalar(event, path)
        if isinstance(event, events.SequenceStartEvent):
            return self._sequence(path, depth)
        return self._mapping(path, depth)

    def _check_tag(self, tag: str | None, allowed: set[str], mark: Any, path: Path) -> bool:
        if tag is None or tag in ("!", "?"):
            return True
        if tag.startswith(_TAG_PREFIX) and tag[len(_TAG_PREFIX) :] in allowed:
            return True
        shown = "!!" + tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag
        self._note(mark, path, f"YAML tag {quoted(shown)} is not supported here", broken=True)
        return False

    def _scalar(self, event: events.ScalarEvent, path: Path) -> object:
        value = event.value
        if not self._check_tag(event.tag, _SCALAR_TAGS, event.start_mark, path):
            return None
        tag = (
            (event.tag or "")[len(_TAG_PREFIX) :]
            if event.tag and event.tag.startswith(_TAG_PREFIX)
            else None
        )
        if tag is None:
            if not event.implicit[0]:  # quoted or block scalar: always a string
                return value
            if _NULL.match(value):
                return None
            if value in _BOOL:
                return _BOOL[value]
            if _INT.match(value):
                return self._integer(event, path, value)
            if _FLOAT.match(value):
                return self._float(event, path, value)
            return value
        try:
            if tag == "str":
                return value
            if tag == "int":
                return self._integer(event, path, value)
            if tag == "float":
                return self._float(event, path, value)
            if tag == "bool":
                return _BOOL[value]
            if value and not _NULL.match(value):
                raise ValueError(value)
            return None
        except (KeyError, ValueError):
            self._note(
                event.start_mark, path, f"{quoted(value)} is not a valid !!{tag}", broken=True
            )
            return None

    def _integer(self, event: events.ScalarEvent, path: Path, value: str) -> object:
        """An integer, or a located problem for one no setting could mean (and that Python
        would refuse to convert, or turn into an infinite float, later)."""
        digits = value.lstrip("+-")
        if len(digits) > MAX_INTEGER_DIGITS:
            self._note(
                event.start_mark,
                path,
                f"the number has {len(digits)} digits; at most {MAX_INTEGER_DIGITS} are accepted: "
                "write a smaller number",
                broken=True,
            )
            return None
        return int(value)

    def _float(self, event: events.ScalarEvent, path: Path, value: str) -> object:
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            self._note(
                event.start_mark, path, "the number is too large: write a smaller one", broken=True
            )
            return None
        return number

    def _sequence(self, path: Path, depth: int) -> object:
        ev = self._events
        start = ev.get_event()
        tag_ok = self._check_tag(start.tag, {"seq"}, start.start_mark, path)
        limit, noun = limits.max_items(path)
        items: list[object] = []
        while not ev.check_event(events.SequenceEndEvent):
            if len(items) == limit:
                raise self._fatal(
                    ev.peek_event().start_mark,
                    _over_limit(limit, noun),
                    path,
                )
            items.append(self._value((*path, len(items)), depth + 1))
        ev.get_event()
        return items if tag_ok else None

    def _mapping(self, path: Path, depth: int) -> object:
        ev = self._events
        start = ev.get_event()
        tag_ok = self._check_tag(start.tag, {"map"}, start.start_mark, path)
        limit, noun = limits.max_items(path)
        result: dict[str, object] = {}
        first_seen: dict[str, int] = {}
        while not ev.check_event(events.MappingEndEvent):
            key_event = ev.peek_event()
            if not isinstance(key_event, events.ScalarEvent):
                # A list or mapping used as a key (`? [a, b]`): skip it and its value.
                self._note(key_event.start_mark, path, "a key must be a plain string")
                self._skip()
                self._skip()
                continue
            ev.get_event()
            key_mark: Any = key_event.start_mark
            key = key_event.value
            if len(result) == limit and key not in result:
                raise self._fatal(
                    key_event.start_mark,
                    _over_limit(limit, noun),
                    path,
                )
            child = (*path, key)
            if key in first_seen:
                # PyYAML would silently keep the last one; here the first one stands.
                self._note(
                    key_event.start_mark,
                    child,
                    f"duplicate key {quoted(key)} (first written on line {first_seen[key]})",
                )
                self._skip()
                continue
            first_seen[key] = key_mark.line + 1
            self._doc.keys[child] = (key_mark.line + 1, key_mark.column + 1)
            result[key] = self._value(child, depth + 1)
        ev.get_event()
        return result if tag_ok else None

    def _skip(self) -> None:
        """Consume one whole node without keeping it (aliases and limits still apply)."""
        ev = self._events
        depth = 0
        while True:
            event = ev.get_event()
            if isinstance(event, events.AliasEvent):
                raise self._alias(event)
            if isinstance(event, events.SequenceStartEvent | events.MappingStartEvent):
                depth += 1
                if depth > limits.MAX_DEPTH:
                    raise self._fatal(
                        event.start_mark, f"nested more than {limits.MAX_DEPTH} levels deep"
                    )
            elif isinstance(event, events.SequenceEndEvent | events.MappingEndEvent):
                depth -= 1
            if not isinstance(event, events.SequenceEndEvent | events.MappingEndEvent):
                self._nodes += 1
                if self._nodes > limits.MAX_NODES:
                    raise self._too_many(event.start_mark, ())
            if depth == 0:
                return

    def _alias(self, event: events.AliasEvent, path: Path = ()) -> FileProblem:
        # Refusing aliases outright keeps memory bounded (no "billion laughs" expansion);
        # policies.yaml never needs them.
        return self._fatal(
            event.start_mark,
            f"YAML aliases (*{printable(event.anchor or '')}) are not supported; "
            "write the value out",
            path,
        )

    def _too_many(self, mark: Any, path: Path) -> FileProblem:
        return self._fatal(
            mark,
            f"the file has more than {limits.MAX_NODES:,} values; that is the limit "
            "(see docs/configuration.md, Limits)",
            path,
        )
