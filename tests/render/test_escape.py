from __future__ import annotations

import pytest

from reconciler.render.escape import (
    code_fence,
    html_text,
    markdown_text,
    mask_emails,
    mask_upn,
    quoted,
    visible,
)


def test_visible_shows_line_breaks_bidi_and_terminal_escapes() -> None:
    assert visible("a\nb\u202ec\x1b[31md\u2028") == "a\\x0ab\\u202ec\\x1b[31md\\u2028"
    assert visible("Ünïcode ok") == "Ünïcode ok"


def test_quoted_escapes_quotes_and_backslashes_once() -> None:
    assert quoted('a "b" \\ c\n') == '"a \\"b\\" \\\\ c\\x0a"'
    assert quoted(None) == "(none)"


@pytest.mark.parametrize(
    ("upn", "masked"),
    [
        ("ann.lee@contoso.com", "a***@contoso.com"),
        ("@contoso.com", "***@contoso.com"),
        ("a@b@contoso.com", "a***@contoso.com"),
        ("nodomain", "n***"),
        ("", ""),
    ],
)
def test_mask_upn(upn: str, masked: str) -> None:
    assert mask_upn(upn) == masked


def test_mask_emails_in_free_text() -> None:
    assert mask_emails("2 users: ann@x.com, bob@y.org and 3 more") == (
        "2 users: a***@x.com, b***@y.org and 3 more"
    )


def test_markdown_text_cannot_open_html_tables_code_links_or_mentions() -> None:
    assert markdown_text("a|b <script> `x` [l](u) @team *i* ~s~ &amp;") == (
        "a\\|b &lt;script&gt; \\`x\\` \\[l\\](u) \\@team \\*i\\* \\~s\\~ &amp;amp;"
    )
    assert html_text("<b>&") == "&lt;b&gt;&amp;"


def test_code_fence_outgrows_backticks_inside() -> None:
    assert code_fence(["plain"], "diff") == ["```diff", "plain", "```"]
    assert code_fence(["a ````` b"]) == ["``````", "a ````` b", "``````"]
