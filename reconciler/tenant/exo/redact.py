"""Keep secrets out of messages and logs.

`redact(text)` removes every secret this process has loaded (registered with `register_secret`
by the credential loaders and the token provider) plus anything that looks like a bearer token,
a JWT, or a secret-bearing form field. `RedactingFilter` applies it to log records of the
loggers that could see a request (ours, msal's, urllib3's).
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "[REDACTED]"

_lock = threading.Lock()
_secrets: set[str] = set()

# A JWT: three base64url parts, the first starting with '{"' encoded (eyJ).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_AUTH_HEADER = re.compile(r"(?i)('?authorization'?\s*[:=]\s*'?)[^',}\n]+")
_FORM_FIELD = re.compile(
    r"(?i)((?:client_secret|client_assertion|assertion|access_token|refresh_token|password)"
    r"['\"]?\s*[=:]\s*['\"]?)[^&'\"\s,}]+"
)
_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` removes it wherever it appears."""
    if value and len(value) >= 4:  # a 1-3 character "secret" would redact half of every line
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every known secret and every token-looking string replaced."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _PEM_KEY.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _FORM_FIELD.sub(lambda m: m.group(1) + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and drops args, already applied)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


_installed = False


def install_log_redaction() -> None:
    """Attach the redacting filter to the root handlers and the loggers that may see requests.

    Logger filters do not apply to records of child loggers (msal logs on "msal.application"),
    so the filter also goes on every handler of the root logger present now. Idempotent.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    the_filter = RedactingFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(the_filter)
    for name in ("reconciler", "authpolicy", "msal", "urllib3", "requests"):
        logging.getLogger(name).addFilter(the_filter)
