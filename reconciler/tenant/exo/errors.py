"""Exchange's errors, parsed into typed exceptions by exception class (exo-adminapi.md §6, §7).

The HTTP status is a weak signal (almost everything is 400 or 403); the exception class name in
`details[0].message` ("<stringId>|<ExceptionClass>|<text>") or in
`innererror.internalexception.type` is what tells "not found" from "already exists" from
"invalid parameter". Exchange's own text is kept on the exception (`exchange_text`) and in its
one-line message, never the token or the request headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reconciler.errors import (
    AuthenticationError,
    TenantError,
    TenantNotFoundError,
    TenantThrottledError,
)
from reconciler.tenant.exo.redact import redact

# V3 module dump, Get-WaitTimeForRetry: exception names in details[0].message that are retried.
TRANSIENT_EXCEPTIONS: tuple[str, ...] = (
    "DCOverloadedException",
    "SuitabilityDirectoryException",
    "ServerInMMException",
    "ADServerSettingsChangedException",
    "StorageTransientException",
    "ADTransientException",
    "TransientException",
)
NOT_FOUND_EXCEPTIONS = ("ManagementObjectNotFoundException", "ADNoSuchObjectException")
ALREADY_EXISTS_EXCEPTIONS = ("ADObjectAlreadyExistsException", "ObjectAlreadyExistsException")
INVALID_PARAMETER_EXCEPTIONS = (
    "ParameterTransformationException",
    "AmbiguousParameterSetException",
    "ParameterBindingException",
    "ParameterBindingValidationException",
    "ArgumentException",
    "ArgumentNullException",
    "ArgumentOutOfRangeException",
    "ValidationArgumentException",
    "DataValidationException",
    "InvalidOperationInDehydratedContextException",
    "RecipientTaskException",
    "TaskArgumentException",
)
PERMISSION_EXCEPTIONS = ("AccessDeniedException", "UnauthorizedAccessException")
CONCURRENCY_TEXT = "maximum number of concurrent requests"
PAGINATION_EXPIRED_TEXT = "Expired or Invalid pagination request"

_MAX_TEXT = 400  # Exchange texts can carry stack traces; a one-line message keeps the start


class ExoError(TenantError):
    """An error answer from the admin API. `str()` is the one-line message for the user."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        exception_type: str = "",
        exchange_text: str = "",
        cmdlet: str = "",
    ) -> None:
        super().__init__(redact(message))
        self.status = status
        self.exception_type = exception_type
        self.exchange_text = redact(exchange_text)
        self.cmdlet = cmdlet


class ExoNotFoundError(ExoError, TenantNotFoundError):
    """The object named does not exist (ManagementObjectNotFoundException, 404)."""


class ExoAlreadyExistsError(ExoError):
    """An object with that name already exists (ADObjectAlreadyExistsException)."""


class ExoInvalidParameterError(ExoError):
    """Exchange refused a parameter or its value (parameter binding/transformation)."""


class ExoPermissionError(ExoError, AuthenticationError):
    """401/403: the token lacks the permission, or the app lacks an Exchange role."""


class ExoThrottledError(ExoError, TenantThrottledError):
    """429 or Exchange's concurrency limit; `retry_after` in seconds when the server said."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        ExoError.__init__(self, message, **kwargs)
        self.retry_after = retry_after


class ExoTransientError(ExoError):
    """503/504/5xx or one of Exchange's transient exception classes: worth another try."""

    retryable = True


class ExoPaginationExpiredError(ExoError):
    """The nextLink cursor expired or was refused ("Expired or Invalid pagination request")."""


class ExoConnectionError(ExoError):
    """The connection failed. `maybe_sent`: the request may have reached the server (a reset or
    timeout after sending), so a write may or may not have taken effect."""

    retryable = True

    def __init__(self, message: str, *, maybe_sent: bool, **kwargs: Any) -> None:
        ExoError.__init__(self, message, **kwargs)
        self.maybe_sent = maybe_sent


class ExoProtocolError(ExoError):
    """The answer was not what the admin API sends (not JSON, a foreign nextLink host, ...)."""


@dataclass(frozen=True, slots=True)
class ParsedError:
    """What an error body says, whatever its shape."""

    code: str = ""
    exception_type: str = ""  # short class name, e.g. ManagementObjectNotFoundException
    text: str = ""  # Exchange's own words


def _short_class(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip()


def parse_error_body(body: bytes, exception_type_header: str = "") -> ParsedError:
    """Pull the code, exception class and text out of an error body (JSON or not)."""
    text = ""
    try:
        doc = json.loads(body.decode("utf-8-sig")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
        # Non-JSON: the concurrency text, an HTML page, or NULs (403 "gzip" of zeros).
        decoded = body.decode("utf-8", errors="replace").replace("\x00", "").strip()
        if decoded and not decoded.lstrip().startswith("<"):
            text = " ".join(decoded.split())
    if not isinstance(doc, dict):
        return ParsedError(exception_type=_short_class(exception_type_header), text=text)
    err = doc.get("error") if isinstance(doc.get("error"), dict) else doc
    assert isinstance(err, dict)
    code = str(err.get("code") or "")
    exc_type = ""
    details = err.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        message = str(details[0].get("message") or "")
        parts = message.split("|", 2)
        if len(parts) == 3:  # "<stringId>|<ExceptionClass>|<text>"
            exc_type, text = _short_class(parts[1]), parts[2].strip()
        elif message:
            text = message.strip()
    inner = err.get("innererror")
    if isinstance(inner, dict):
        internal = inner.get("internalexception")
        if isinstance(internal, dict):
            internal_type = _short_class(str(internal.get("type") or ""))
            internal_text = str(internal.get("message") or "").strip()
            # details wins (the module reads it first), internalexception fills the gaps;
            # a wrapper type (DirectInvokeCmdletExecutionException) never hides the real class.
            if not exc_type or exc_type == "Exception":
                exc_type = internal_type
            if not text:
                text = internal_text
        if not text:
            text = str(inner.get("message") or "").strip()
    if not exc_type and exception_type_header:
        exc_type = _short_class(exception_type_header)
    if not text:
        text = str(err.get("message") or "").strip()
    return ParsedError(code=code, exception_type=exc_type, text=text)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_TEXT else line[: _MAX_TEXT - 3] + "..."


def _contains(name: str, text: str, candidates: tuple[str, ...]) -> bool:
    return any(c.lower() in name.lower() or c in text for c in candidates)


def classify_error(
    status: int,
    body: bytes,
    *,
    cmdlet: str,
    is_write: bool,
    exception_type_header: str = "",
    retry_after: float | None = None,
) -> ExoError:
    """The typed exception for an error answer of one cmdlet call."""
    parsed = parse_error_body(body, exception_type_header)
    exc, text = parsed.exception_type, _one_line(parsed.text)
    said = f": {text}" if text else ""
    common: dict[str, Any] = {
        "status": status,
        "exception_type": exc,
        "exchange_text": text,
        "cmdlet": cmdlet,
    }

    if status == 429 or CONCURRENCY_TEXT in parsed.text.lower():
        wait = f"; asked to wait {retry_after:g}s" if retry_after is not None else ""
        return ExoThrottledError(
            f"Exchange throttled {cmdlet} ({status}{wait}){said}", retry_after=retry_after, **common
        )
    if PAGINATION_EXPIRED_TEXT.lower() in parsed.text.lower():
        return ExoPaginationExpiredError(
            f"Exchange refused the next page of {cmdlet} ({status}){said}", **common
        )
    if _contains(exc, parsed.text, TRANSIENT_EXCEPTIONS) and status < 500:
        return ExoTransientError(f"Exchange had a transient failure in {cmdlet}{said}", **common)
    if status == 401:
        return ExoPermissionError(
            "Exchange refused the token (401): the app lacks the Exchange.ManageAsApp application "
            "permission (Office 365 Exchange Online API) or admin consent for it; grant it and "
            "consent in the app registration",
            **common,
        )
    # A 403 is the app's missing role only when Exchange says so (no cmdlet ran: an empty or
    # NUL body, the role text, or an access-denied class). Exchange answers per-object
    # failures with 403 too (e.g. an object outside a write scope): those name another
    # exception class, concern that one object, and must not stop the others.
    per_object = bool(exc) and not _contains(exc, "", PERMISSION_EXCEPTIONS) and status == 403
    if (status == 403 and not per_object) or (exc and _contains(exc, "", PERMISSION_EXCEPTIONS)):
        if is_write:
            message = (
                f"Exchange refused {cmdlet} (403): the app's role does not allow changes (e.g. "
                "Global Reader is read-only); assign the Exchange Administrator role to the "
                "app to apply"
            )
        else:
            message = (
                f"Exchange refused {cmdlet} (403): the app has no Exchange directory role; assign "
                "Exchange Administrator (apply) or Global Reader (plan/drift/report) to the app"
            )
        return ExoPermissionError(message + said, **common)
    if (
        (exc and _contains(exc, "", NOT_FOUND_EXCEPTIONS))
        or status == 404
        or parsed.code == "NotFound"
    ):
        return ExoNotFoundError(f"{cmdlet}: not found{said}", **common)
    if (exc and _contains(exc, "", ALREADY_EXISTS_EXCEPTIONS)) or "already exists" in text.lower():
        return ExoAlreadyExistsError(f"{cmdlet}: already exists{said}", **common)
    if status in (500, 502, 503, 504) or _contains(exc, parsed.text, TRANSIENT_EXCEPTIONS):
        return ExoTransientError(f"Exchange is unavailable for {cmdlet} ({status}){said}", **common)
    if exc and _contains(exc, "", INVALID_PARAMETER_EXCEPTIONS):
        return ExoInvalidParameterError(f"Exchange refused {cmdlet}{said}", **common)
    if status == 408:
        return ExoTransientError(f"Exchange timed out on {cmdlet} (408){said}", **common)
    return ExoError(f"Exchange refused {cmdlet} ({status}){said}", **common)
