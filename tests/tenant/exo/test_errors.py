"""Error bodies of the reference (exo-adminapi.md §6) become the right typed exceptions."""

from __future__ import annotations

import json

import pytest

from reconciler.errors import AuthenticationError, TenantNotFoundError, TenantThrottledError
from reconciler.tenant.exo.errors import (
    ExoAlreadyExistsError,
    ExoError,
    ExoInvalidParameterError,
    ExoNotFoundError,
    ExoPaginationExpiredError,
    ExoPermissionError,
    ExoThrottledError,
    ExoTransientError,
    classify_error,
    parse_error_body,
)


def envelope(
    code: str, details: str | None, internal_type: str = "", internal_message: str = ""
) -> bytes:
    error: dict[str, object] = {"code": code, "message": "Error executing cmdlet"}
    if details is not None:
        error["details"] = [{"code": "Client", "target": "", "message": details}]
    error["innererror"] = {
        "message": "x",
        "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
        "internalexception": {"message": internal_message, "type": internal_type},
    }
    error["@adminapi.warnings"] = []
    return json.dumps({"error": error}).encode()


NOT_FOUND = envelope(
    "NotFound",
    "Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|The "
    "operation couldn't be performed because object 'ann' couldn't be found on 'DC1'.",
    "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException",
)


def test_not_found_keeps_exchange_text_and_class() -> None:
    err = classify_error(404, NOT_FOUND, cmdlet="Set-User", is_write=True)
    assert isinstance(err, ExoNotFoundError)
    assert isinstance(err, TenantNotFoundError)
    assert err.exception_type == "ManagementObjectNotFoundException"
    assert err.exchange_text == (
        "The operation couldn't be performed because object 'ann' couldn't be found on 'DC1'."
    )
    assert str(err) == (
        "Set-User: not found: The operation couldn't be performed because object 'ann' "
        "couldn't be found on 'DC1'."
    )


def test_unknown_parameter_with_empty_string_id() -> None:
    body = envelope(
        "BadRequest",
        "|Microsoft.Exchange.AdminApi.CommandInvocation.AmbiguousParameterSetException|Parameter "
        "set cannot be resolved using the specified named parameters. BogusParameter",
    )
    err = classify_error(400, body, cmdlet="Get-User", is_write=False)
    assert isinstance(err, ExoInvalidParameterError)
    assert err.exception_type == "AmbiguousParameterSetException"
    assert "BogusParameter" in str(err)


def test_bad_enum_value_only_in_internalexception() -> None:
    body = envelope(
        "BadRequest",
        None,
        "Microsoft.Exchange.AdminApi.CommandInvocation.ParameterTransformationException",
        'Cannot convert value "Nope" ... Valid values: UserMailbox, MailUser',
    )
    err = classify_error(400, body, cmdlet="Get-User", is_write=False)
    assert isinstance(err, ExoInvalidParameterError)
    assert "Valid values: UserMailbox, MailUser" in err.exchange_text


def test_already_exists() -> None:
    body = envelope(
        "BadRequest",
        "Ex2|Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException|The object "
        "'CN=Block' already exists.",
    )
    err = classify_error(400, body, cmdlet="New-AuthenticationPolicy", is_write=True)
    assert isinstance(err, ExoAlreadyExistsError)


def test_transient_exception_names_are_retryable() -> None:
    body = envelope("BadRequest", "|Microsoft.Exchange.Data.Directory.DCOverloadedException|busy")
    err = classify_error(400, body, cmdlet="Get-User", is_write=False)
    assert isinstance(err, ExoTransientError)
    assert err.retryable


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    assert isinstance(
        classify_error(status, b"", cmdlet="Get-User", is_write=False), ExoTransientError
    )


def test_429_with_retry_after() -> None:
    err = classify_error(429, b"", cmdlet="Get-User", is_write=False, retry_after=1.5)
    assert isinstance(err, ExoThrottledError)
    assert isinstance(err, TenantThrottledError)
    assert err.retry_after == 1.5
    assert str(err) == "Exchange throttled Get-User (429; asked to wait 1.5s)"


def test_concurrency_text_is_throttling_whatever_the_status() -> None:
    body = (
        b"You have reached the maximum number of concurrent requests per tenant. "
        b"Please wait and try again."
    )
    err = classify_error(503, body, cmdlet="Set-User", is_write=True)
    assert isinstance(err, ExoThrottledError)


def test_pagination_expired() -> None:
    body = envelope(
        "BadRequest",
        None,
        "System.Exception",
        "Expired or Invalid pagination request. Default Expiry time is 00:30:00",
    )
    err = classify_error(400, body, cmdlet="Get-User", is_write=False)
    assert isinstance(err, ExoPaginationExpiredError)


def test_401_says_which_permission() -> None:
    err = classify_error(401, b"", cmdlet="Get-User", is_write=False)
    assert isinstance(err, ExoPermissionError)
    assert isinstance(err, AuthenticationError)
    assert "Exchange.ManageAsApp" in str(err)
    assert str(err).startswith("Exchange refused the token (401)")


def test_403_nul_body_read_vs_write() -> None:
    nul = b"\x00" * 32
    read = classify_error(403, nul, cmdlet="Get-User", is_write=False)
    write = classify_error(403, nul, cmdlet="Set-User", is_write=True)
    assert str(read) == (
        "Exchange refused Get-User (403): the app has no Exchange directory role; assign "
        "Exchange Administrator (apply) or Global Reader (plan/drift/report) to the app"
    )
    assert str(write).startswith(
        "Exchange refused Set-User (403): the app's role does not allow changes"
    )
    assert "Exchange Administrator" in str(write)


def test_parse_error_body_tolerates_garbage() -> None:
    assert parse_error_body(b"<html>oops</html>").text == ""
    assert parse_error_body(b"\x00\x00").text == ""
    assert parse_error_body(b"plain words").text == "plain words"
    assert parse_error_body(b"[1,2]").text == ""
    generic = classify_error(418, b"{}", cmdlet="Get-User", is_write=False)
    assert type(generic) is ExoError
    assert str(generic) == "Exchange refused Get-User (418)"
