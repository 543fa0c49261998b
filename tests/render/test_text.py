from __future__ import annotations

import pytest

from reconciler.render import render_plan
from tests.render.scenarios import contoso_plan, guarded_plan


def test_no_escape_codes_without_colour_and_some_with_it() -> None:
    plain = render_plan(contoso_plan(), "text")
    assert "\x1b[" not in plain
    coloured = render_plan(contoso_plan(), "text", color=True)
    assert "\x1b[32m  + create policy" in coloured
    assert '\x1b[1;31m  ~ 1 user: "Strict" → "SMTP relay devices"' in coloured
    # same words either way
    import re

    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_show_users_limits_each_group() -> None:
    text = render_plan(guarded_plan(), "text", show_users=2)
    assert (
        "      new01@contoso.com\n      ... and 43 more (--show-users all lists every one)" in text
    )
    every = render_plan(guarded_plan(), "text", show_users=None)
    assert "new44@contoso.com" in every and "more (--show-users" not in every
    none = render_plan(guarded_plan(), "text", show_users=0)
    assert "new00" not in none and "... and 45 more" in none


def test_unknown_format_and_masked_json_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown plan format 'yaml'"):
        render_plan(contoso_plan(), "yaml")
    with pytest.raises(ValueError, match="never masked"):
        render_plan(contoso_plan(), "json", mask_users=True)


def test_users_without_a_direct_policy_show_the_default_that_governs_them() -> None:
    text = render_plan(guarded_plan(), "text")
    assert (
        '  + 45 users: (none, default "Block") → "Block"  (rule "everyone"; effective policy '
        "unchanged)\n" in text
    )
