"""The report's renderers: golden files for text and markdown, exact checks for json and csv.

Regenerate the golden files after an intended change with
`AUTHPOLICY_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/report` and review the diff.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from reconciler.model import TenantPolicy, TenantSnapshot
from reconciler.report import REPORT_FORMATS, build_report, render_report
from reconciler.report.machine import CSV_COLUMNS
from reconciler.report.markdown import md
from tests.export.tenants import SCENARIOS, user
from tests.report.test_model import snapshot

GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("AUTHPOLICY_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("fmt", "suffix"), [("text", "txt"), ("markdown", "md")])
def test_golden(fmt: str, suffix: str) -> None:
    _golden(f"report.{suffix}", render_report(build_report(snapshot()), fmt))


@pytest.mark.parametrize("fmt", REPORT_FORMATS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_format_renders_every_scenario_deterministically(fmt: str, scenario: str) -> None:
    snap = SCENARIOS[scenario]()
    reversed_snap = TenantSnapshot(
        tenant=snap.tenant,
        policies=tuple(reversed(snap.policies)),
        default_policy=snap.default_policy,
        users=tuple(reversed(snap.users)),
        smtp_org=snap.smtp_org,
        smtp_org_read=snap.smtp_org_read,
        mailboxes_read=snap.mailboxes_read,
    )
    first = render_report(build_report(snap), fmt)
    assert first == render_report(build_report(reversed_snap), fmt)
    assert first.endswith("\n")


def _many(n: int) -> TenantSnapshot:
    return TenantSnapshot(
        tenant="t",
        policies=(TenantPolicy("Open", frozenset({"smtp"})),),
        default_policy="Open",
        users=tuple(user(f"{i:03d}", None) for i in range(n)),
        smtp_org="enabled",
        smtp_org_read=True,
        mailboxes_read=True,
    )


def test_text_lists_the_first_users_then_a_count() -> None:
    text = render_report(build_report(_many(25)), "text", show_users=3)
    assert "Can still use Basic SMTP AUTH (25)" in text
    assert (
        "  user000@contoso.com  Open (default)  policy allows Basic SMTP; "
        "SMTP AUTH enabled org-wide\n" in text
    )
    assert "user003@contoso.com" not in text
    assert "  ... and 22 more (--show-users all to list them)" in text
    everyone = render_report(build_report(_many(25)), "text", show_users=None)
    assert "user024@contoso.com" in everyone and "more (--show-users" not in everyone


def test_text_headline_numbers() -> None:
    text = render_report(build_report(_many(25)), "text")
    assert "  25  users\n   0  protected" in text
    assert "  25  can still use Basic SMTP AUTH (100.0%)" in text


def test_text_escapes_terminal_control_sequences() -> None:
    snap = TenantSnapshot(
        tenant="t",
        policies=(TenantPolicy("red\x1b[31m", frozenset({"smtp"})),),
        default_policy=None,
        users=(user(1, "red\x1b[31m", upn="a\x1b]0;pwned\x07@c.com"),),
    )
    text = render_report(build_report(snap), "text")
    assert "\x1b" not in text and "\x07" not in text
    assert "red\\x1b[31m" in text
    assert "a\\x1b]0;pwned\\x07@c.com" in text


def test_markdown_escapes_hostile_values() -> None:
    assert md("<img src=x>") == "&lt;img src=x&gt;"
    assert md("[x](http://evil)") == "\\[x\\]\\(http\\://evil\\)"
    assert md("a|b\nc") == "a\\|b c"
    assert md("@team") == "\\@team"
    snap = TenantSnapshot(
        tenant="t",
        policies=(TenantPolicy("<b>|x|</b>", frozenset({"smtp"})),),
        default_policy="<b>|x|</b>",
        users=(user(1, None, upn="@admins"),),
    )
    text = render_report(build_report(snap), "markdown")
    assert "<b>" not in text
    assert "| &lt;b&gt;\\|x\\|&lt;/b&gt; (default) | 0 | 1 | 1 | 1 | smtp |" in text
    assert "| \\@admins |" in text


def test_markdown_truncates_lists_with_a_pointer() -> None:
    text = render_report(build_report(_many(5)), "markdown", show_users=2)
    assert "### Can still use Basic SMTP AUTH (5)" in text
    assert "... and 3 more (`authpolicy report --show-users all`)." in text


def test_json_holds_every_user_and_the_summary() -> None:
    data = json.loads(render_report(build_report(snapshot()), "json", show_users=1))
    assert data["format_version"] == 1
    assert data["summary"]["smtp_basic_auth_possible"] == 3
    assert len(data["users"]) == 8
    e = next(u for u in data["users"] if u["upn"] == "usere@contoso.com")
    assert e == {
        "upn": "usere@contoso.com",
        "user_id": "id-e",
        "recipient_type": "UserMailbox",
        "direct_policy": "SMTP relay devices",
        "effective_policy": "SMTP relay devices",
        "basic_smtp": "allowed",
        "via": "direct",
        "policy_found": True,
        "allowed": ["smtp"],
        "smtp_auth_enabled": True,
        "smtp_auth_source": "mailbox",
        "smtp_basic_auth_possible": True,
    }
    legacy = next(p for p in data["policies"] if p["name"] == "Legacy")
    assert legacy["allowed_no_effect"] == ["imap", "pop"]


def test_csv_one_row_per_user_with_the_documented_columns() -> None:
    text = render_report(build_report(snapshot()), "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert (
        tuple(rows[0])
        == CSV_COLUMNS
        == (
            "upn",
            "recipient_type",
            "direct_policy",
            "effective_policy",
            "via",
            "smtp_basic_auth_possible",
            "allowed_protocols",
            "basic_auth_last_use",
        )
    )
    assert len(rows) == 9
    assert rows[2] == ["userb@contoso.com", "UserMailbox", "", "Strict", "default", "false", "", ""]
    assert rows[6] == [
        "userf@contoso.com",
        "UserMailbox",
        "Legacy",
        "Legacy",
        "direct",
        "false",
        "imap pop",
        "",
    ]


def test_csv_neutralises_formulas() -> None:
    snap = TenantSnapshot(
        tenant="t",
        policies=(TenantPolicy('=HYPERLINK("http://evil")', frozenset()),),
        default_policy=None,
        users=(user(1, '=HYPERLINK("http://evil")', upn="+1@c.com"),),
    )
    rows = list(csv.reader(io.StringIO(render_report(build_report(snap), "csv"))))
    assert rows[1][:4] == [
        "'+1@c.com",
        "UserMailbox",
        '\'=HYPERLINK("http://evil")',
        '\'=HYPERLINK("http://evil")',
    ]


def test_csv_shows_control_bidi_and_zero_width_characters_as_escapes() -> None:
    hostile = "\x1b[31mred\u202eevil\u200bhidden"
    snap = TenantSnapshot(
        tenant="t",
        policies=(TenantPolicy(hostile, frozenset()),),
        default_policy=None,
        users=(user(1, hostile, upn="\t=cmd@c.com"),),
    )
    text = render_report(build_report(snap), "csv")
    assert not any(ord(c) < 0x20 and c != "\n" for c in text)
    assert "\u202e" not in text and "\u200b" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][0] == "\\x09=cmd@c.com"  # shown, and no longer a formula either
    assert rows[1][2] == "\\x1b[31mred\\u202eevil\\u200bhidden"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report format 'xml'"):
        render_report(build_report(snapshot()), "xml")
