"""Exchange's wire format: dates, the OData envelope and the error bodies.

Texts and shapes follow reference/exo-adminapi.md §5, §6 and §9. Where the reference has no
verbatim text, the emulator uses Exchange's usual wording and docs/emulator.md says so.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

# A fake domain controller name: Exchange names the DC in its "not found" text.
DC_FQDN = "EMU01A001DC001.EMULATOR01A001.PROD.OUTLOOK.COM"

NOT_FOUND_CLASS = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
ALREADY_EXISTS_CLASS = "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException"
PARAMETER_SET_CLASS = "Microsoft.Exchange.AdminApi.CommandInvocation.AmbiguousParameterSetException"
TRANSFORMATION_CLASS = (
    "Microsoft.Exchange.AdminApi.CommandInvocation.ParameterTransformationException"
)
VALIDATION_CLASS = "System.Management.Automation.ParameterBindingValidationException"
BINDING_CLASS = "System.Management.Automation.ParameterBindingException"
INVALID_OPERATION_CLASS = "Microsoft.Exchange.Configuration.Tasks.TaskInvalidOperationException"
NULL_REFERENCE_CLASS = "System.NullReferenceException"
DIRECT_INVOKE_CLASS = (
    "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException"
)
ODATA_SERVICE_CLASS = "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"

MORE_RESULTS_WARNING = (
    "There are more results available than are currently displayed. To view them, increase the "
    "value for the ResultSize parameter."
)
PAGINATION_EXPIRED_TEXT = "Expired or Invalid pagination request. Default Expiry time is 00:30:00"
CONCURRENCY_TEXT = (
    "You have reached the maximum number of concurrent requests per tenant. "
    "Please wait and try again."
)

JSON_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)


def format_date(value: dt.datetime) -> str:
    """Exchange's ISO 8601 form: 7 fractional digits and an explicit +00:00 offset."""
    text = value.astimezone(dt.UTC).isoformat(timespec="microseconds")  # ...SS.ffffff+00:00
    return text[:-6] + "0+00:00"


def parse_date(text: str) -> dt.datetime:
    """Parse the date forms clients send (`2024-05-22T16:52:10`, with Z/offset/fraction).

    A date without an offset is UTC: the module converts DateTime parameters to UTC first.
    Raises ValueError when the text is not a date.
    """
    raw = text.strip()
    if raw.endswith("Z") or raw.endswith("z"):
        raw = raw[:-1] + "+00:00"
    # Python accepts at most 6 fractional digits; Exchange sends 7.
    if "." in raw:
        head, _, rest = raw.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        raw = f"{head}.{(digits + '000000')[:6]}{rest}"
    parsed = dt.datetime.fromisoformat(raw)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def context_url(base: str, tenant: str) -> str:
    """The `@odata.context` of an InvokeCommand answer."""
    return f"{base}/adminapi/beta/{tenant}/$metadata#Collection(Exchange.GenericHashTable)"


def envelope(
    base: str,
    tenant: str,
    value: list[dict[str, Any]] | None,
    *,
    warnings: list[str] | None = None,
    next_link: str | None = None,
    include_value: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The success envelope of reference §5."""
    body: dict[str, Any] = {
        "@odata.context": context_url(base, tenant),
        "adminapi.warnings@odata.type": "#Collection(String)",
        "@adminapi.warnings": list(warnings or []),
    }
    if extra:
        body.update(extra)
    if include_value:
        body["value"] = value
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    return body


class CmdletError(Exception):
    """A cmdlet failure, rendered as Exchange's error envelope (reference §6)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        exception_class: str,
        text: str,
        *,
        string_id: str = "",
        with_details: bool = True,
        internal_class: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.message = message
        self.exception_class = exception_class
        self.text = text
        self.string_id = string_id
        self.with_details = with_details
        self.internal_class = internal_class or exception_class

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.with_details:
            error["details"] = [
                {
                    "code": "Client",
                    "target": "",
                    "message": f"{self.string_id}|{self.exception_class}|{self.text}",
                }
            ]
        error["innererror"] = {
            "message": self.text,
            "type": ODATA_SERVICE_CLASS,
            "stacktrace": "",
            "internalexception": {
                "message": self.text,
                "type": self.internal_class,
                "stacktrace": "",
            },
        }
        error["adminapi.warnings@odata.type"] = "#Collection(String)"
        error["@adminapi.warnings"] = []
        return {"error": error}

    def headers(self) -> dict[str, str]:
        """Exchange names the exception class in a header too."""
        return {"x-ExceptionType": self.exception_class.rsplit(".", 1)[-1]}


def not_found(identity: str) -> CmdletError:
    """ManagementObjectNotFoundException for an identity that resolves to nothing."""
    return CmdletError(
        404,
        "NotFound",
        "Error executing cmdlet",
        NOT_FOUND_CLASS,
        f"The operation couldn't be performed because object '{identity}' couldn't be found on "
        f"'{DC_FQDN}'.",
        string_id="Ex6F9304",
        internal_class=DIRECT_INVOKE_CLASS,
    )


def already_exists(dn: str) -> CmdletError:
    """ADObjectAlreadyExistsException for a duplicate policy name."""
    return CmdletError(
        400,
        "BadRequest",
        "Error executing cmdlet",
        ALREADY_EXISTS_CLASS,
        f"The object '{dn}' already exists.",
        string_id="Ex5D1B3C",
        internal_class=DIRECT_INVOKE_CLASS,
    )


def authentication_policy_refused(identity: str, recipient_type: str) -> CmdletError:
    """Set-User -AuthenticationPolicy on a recipient type Exchange does not take it for
    (`set_user_refuses`; the text is the emulator's own: Microsoft's is not documented)."""
    return CmdletError(
        400,
        "BadRequest",
        "Error executing cmdlet",
        INVALID_OPERATION_CLASS,
        f"The authentication policy can't be set on '{identity}' because its recipient type "
        f"is {recipient_type}.",
        string_id="Ex2B7E40",
        internal_class=DIRECT_INVOKE_CLASS,
    )


def parameter_set(cmdlet: str, names: list[str]) -> CmdletError:
    """AmbiguousParameterSetException: a parameter the cmdlet does not have, or a bad mix."""
    return CmdletError(
        400,
        "BadRequest",
        "Invalid Operation",
        PARAMETER_SET_CLASS,
        "Parameter set cannot be resolved using the specified named parameters. "
        f"A parameter cannot be found that matches parameter name '{', '.join(names)}' "
        f"for cmdlet '{cmdlet}'.",
    )


def missing_parameter(cmdlet: str, name: str) -> CmdletError:
    """A mandatory parameter is absent."""
    return CmdletError(
        400,
        "BadRequest",
        "Invalid Operation",
        PARAMETER_SET_CLASS,
        f"Parameter set cannot be resolved using the specified named parameters. "
        f"Cmdlet '{cmdlet}' is missing mandatory parameter '{name}'.",
    )


def bad_enum(parameter: str, value: Any, type_name: str, choices: list[str]) -> CmdletError:
    """ParameterTransformationException; like Exchange, only in innererror (no details)."""
    return CmdletError(
        400,
        "BadRequest",
        "Invalid Operation",
        TRANSFORMATION_CLASS,
        f"Cannot process argument transformation on parameter '{parameter}'. Cannot convert value "
        f'"{value}" to type "{type_name}". Error: "Unable to match the identifier name {value} '
        "to a valid enumerator name. Specify one of the following enumerator names and try "
        f'again: {", ".join(choices)}"',
        with_details=False,
    )


def bad_value(parameter: str, value: Any, type_name: str) -> CmdletError:
    """ParameterTransformationException for a value of the wrong type."""
    return CmdletError(
        400,
        "BadRequest",
        "Invalid Operation",
        TRANSFORMATION_CLASS,
        f"Cannot process argument transformation on parameter '{parameter}'. Cannot convert value "
        f'"{value}" to type "{type_name}".',
        with_details=False,
    )


def too_long(parameter: str, limit: int) -> CmdletError:
    """PowerShell's ValidateLength failure."""
    return CmdletError(
        400,
        "BadRequest",
        "Error executing cmdlet",
        VALIDATION_CLASS,
        f"Cannot validate argument on parameter '{parameter}'. The length of the argument is too "
        f'long. Shorten the length of the argument to less than or equal to "{limit}" and then '
        "try the command again.",
    )


def invalid_filter(filter_text: str, position: int) -> CmdletError:
    """An OPATH filter the server cannot parse."""
    return CmdletError(
        400,
        "BadRequest",
        "Error executing cmdlet",
        BINDING_CLASS,
        'Cannot bind parameter \'Filter\' to the target. Exception setting "Filter": "Invalid '
        "filter syntax. For a description of the filter parameter syntax see the command help.\n"
        f'"{filter_text}" at position {position}."',
    )


def pagination_expired() -> CmdletError:
    """The cursor of a nextLink is unknown, expired or replayed with another body."""
    return CmdletError(
        400,
        "BadRequest",
        "Invalid Operation",
        "System.Exception",
        PAGINATION_EXPIRED_TEXT,
        with_details=False,
    )


def dumps(body: Any) -> bytes:
    """Compact JSON, UTF-8."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
