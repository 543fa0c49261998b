"""Problems found in policies.yaml, and how they are printed.

Every problem is one line, `FILE:LINE:COL: path.to.key: message`, so editors and CI logs can
jump to it. Paths read like a breadcrumb: `policies.Block Basic Auth.allow[1]`,
`assignments.rules[devices].match.upn[0]` (a rule is named by its `name` when it has one).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A path into the document: mapping keys (str) and list indexes (int).
Path = tuple[str | int, ...]

# Used for problems that belong to no key (syntax errors, an empty file, the top level).
DOCUMENT = "(document)"


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with the file. Ordered by position so a report reads top to bottom."""

    line: int  # 1-based
    column: int  # 1-based
    where: str  # the rendered path, or DOCUMENT
    message: str

    def format(self, filename: str) -> str:
        """The one-line form printed to the user."""
        return f"{filename}:{self.line}:{self.column}: {self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem before it is placed: the path it concerns and what is wrong.

    `at_key` points the problem at the key rather than its value (unknown key, bad name);
    `position` overrides both when the reader already knows exactly where it is.
    """

    path: Path
    message: str
    at_key: bool = False
    position: tuple[int, int] | None = None


def printable(text: str) -> str:
    """`text` with control characters escaped, so a problem stays on one line."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        else:
            out.append(f"\\u{ord(char):04x}")
    return "".join(out)


def quoted(value: object) -> str:
    """A value as it is quoted inside a message: strings in single quotes, escaped."""
    if isinstance(value, str):
        return "'" + printable(value) + "'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return printable(repr(value))


def render_path(path: Path, rule_names: Sequence[str | None] = ()) -> str:
    """`('policies', 'Block', 'allow', 1)` -> `policies.Block.allow[1]`.

    Rules are shown by name (`assignments.rules[devices]`) when `rule_names` knows it.
    """
    if not path:
        return DOCUMENT
    parts: list[str] = []
    for position, part in enumerate(path):
        if isinstance(part, int):
            label = str(part)
            if path[:position] == ("assignments", "rules") and part < len(rule_names):
                name = rule_names[part]
                if name:
                    label = name
            parts.append(f"[{printable(label)}]")
        else:
            parts.append(("." if parts else "") + (printable(part) if part else "''"))
    return "".join(parts)


def suggestion(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or '' when nothing is close."""
    folded = {choice.casefold(): choice for choice in choices}
    close = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return f"; did you mean {quoted(folded[close[0]])}?" if close else ""


def describe_type(value: object) -> str:
    """What a YAML value is, in the words a user knows: a list, a mapping, a number..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
