"""Making tenant-side strings safe to show.

Policy names and UPNs read from the tenant may contain anything (the loader refuses odd names
in policies.yaml, the tenant does not): newlines that forge plan lines, bidi overrides that
reorder them, `|` that breaks a Markdown table, `<script>`, backticks that close a code fence,
`@team` mentions. Every renderer passes names through these functions.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Control, format (bidi overrides, zero-width), line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_EMAIL = re.compile(r"[^\s,;:\"'()<>\[\]]+@[^\s,;:\"'()<>\[\]]+")
# Inline only (our text never starts a line): what could start markup, a link, a table cell
# break, strike-through or a mention.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|~@])")


def visible(text: str) -> str:
    """`text` with every invisible or line-breaking character shown as an escape (\\u202e)."""
    if text.isprintable():  # the common case, fast
        return text
    out = []
    for char in text:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def quoted(name: str | None) -> str:
    """A name for a plan line: visible, in double quotes (inner quotes escaped); None = (none)."""
    if name is None:
        return "(none)"
    return '"' + visible(name.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def mask_upn(upn: str) -> str:
    """Personal data out of public places: ann.lee@contoso.com -> a***@contoso.com."""
    local, at, domain = upn.rpartition("@")
    if not at:
        return (upn[:1] + "***") if upn else upn
    return (local[:1] or "") + "***@" + domain


def is_plain_address(text: str) -> bool:
    """Would mask_emails find `text` whole (no spaces, quotes, brackets...)?"""
    return _EMAIL.fullmatch(text) is not None


def mask_emails(text: str) -> str:
    """Mask every address-looking token in a free-text message (warnings, guards)."""
    return _EMAIL.sub(lambda m: mask_upn(m.group(0)), text)


def markdown_text(text: str) -> str:
    """Free text for Markdown prose or a table cell: no HTML, no markup, no mentions."""
    text = visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def html_text(text: str) -> str:
    """Text inside an HTML element such as <summary> (Markdown is not parsed there)."""
    return html.escape(visible(text), quote=False)


def code_fence(lines: list[str], info: str = "") -> list[str]:
    """`lines` in a fenced block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *lines, fence]
