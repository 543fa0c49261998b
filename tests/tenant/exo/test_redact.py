"""Secrets never reach messages or logs."""

from __future__ import annotations

import logging

import pytest

from reconciler.tenant.exo.redact import REDACTED, RedactingFilter, redact, register_secret

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ4eHh4In0.c2lnbmF0dXJlLXBhcnQ"


def test_registered_secret_is_removed_everywhere() -> None:
    register_secret("Sup3r~Secret.Value")
    assert redact("oops: Sup3r~Secret.Value and again Sup3r~Secret.Value") == (
        f"oops: {REDACTED} and again {REDACTED}"
    )


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        ("{'Authorization': 'Bearer abc.def-ghi'}", "abc.def-ghi"),
        ("client_secret=abcDEF123&grant_type=client_credentials", "abcDEF123"),
        (f"client_assertion={JWT}&x=1", JWT),
        (f"token {JWT} end", JWT),
        ("-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----", "MIIEv"),
        ('{"password": "hunter22"}', "hunter22"),
    ],
)
def test_token_shapes_are_removed(text: str, leak: str) -> None:
    cleaned = redact(text)
    assert leak not in cleaned
    assert REDACTED in cleaned


def test_ordinary_text_is_untouched() -> None:
    text = "Set-User: not found: The operation couldn't be performed because object 'x' is gone"
    assert redact(text) == text


def test_logging_filter_redacts_formatted_message() -> None:
    record = logging.LogRecord(
        "msal", logging.DEBUG, __file__, 1, "sent %s", (f"Bearer {JWT}",), None
    )
    RedactingFilter().filter(record)
    assert JWT not in record.getMessage()
    assert record.getMessage() == f"sent Bearer {REDACTED}"
