"""The InvokeCommand client's paging and header contract, with a recording fake session."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from reconciler.tenant.exo.client import AdminApiClient, BatchItem
from reconciler.tenant.exo.errors import ExoProtocolError
from reconciler.tenant.exo.settings import CLOUDS, ConnectionSettings, CredentialSource
from tests.tenant.exo.conftest import fast_retry

TENANT = "contoso.onmicrosoft.com"
BASE = f"https://outlook.office365.com/adminapi/beta/{TENANT}"


class FakeTokens:
    def __init__(self) -> None:
        self.count = 0

    def get(self) -> str:
        self.count += 1
        return f"token-{self.count}"

    def invalidate(self, token: str) -> None:
        pass

    def claims(self) -> dict[str, Any]:
        return {}


class FakeResponse:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.content = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.headers = requests.structures.CaseInsensitiveDict(headers or {})

    def close(self) -> None:
        pass


class RecordingSession:
    def __init__(self, responses: list[FakeResponse]) -> None:
        self.responses = responses
        self.calls: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.calls.append({"url": url, **kwargs})
        return self.responses.pop(0)


def make_client(responses: list[FakeResponse]) -> tuple[AdminApiClient, RecordingSession]:
    settings = ConnectionSettings(
        tenant=TENANT,
        client_id="app",
        cloud=CLOUDS["commercial"],
        credential=CredentialSource("secret", secret_env="X"),
    )
    session = RecordingSession(responses)
    client = AdminApiClient(settings, FakeTokens(), session, retry=fast_retry())  # type: ignore[arg-type]
    return client, session


def page(values: list[dict[str, Any]], next_link: str | None = None) -> FakeResponse:
    body: dict[str, Any] = {"@odata.context": "x", "@adminapi.warnings": [], "value": values}
    if next_link:
        body["@odata.nextLink"] = next_link
    return FakeResponse(200, body)


def test_pages_reuse_body_request_id_and_anchor() -> None:
    link1 = f"{BASE}/InvokeCommand?$select=Name&$skiptoken=a"
    link2 = f"{BASE}/InvokeCommand?$select=Name&$skiptoken=b"
    client, session = make_client(
        [page([{"Name": "a"}], link1), page([{"Name": "b"}], link2), page([{"Name": "c"}])]
    )
    pages = list(client.iter_pages("Get-User", {"ResultSize": "Unlimited"}, select=["Name"]))
    assert pages == [[{"Name": "a"}], [{"Name": "b"}], [{"Name": "c"}]]
    assert [c["url"] for c in session.calls] == [f"{BASE}/InvokeCommand?$select=Name", link1, link2]
    bodies = {c["data"] for c in session.calls}
    assert bodies == {
        b'{"CmdletInput":{"CmdletName":"Get-User","Parameters":{"ResultSize":"Unlimited"}}}'
    }
    for name in ("client-request-id", "X-AnchorMailbox", "Prefer", "X-CmdletName"):
        assert len({c["headers"][name] for c in session.calls}) == 1
    first = session.calls[0]["headers"]
    assert first["X-AnchorMailbox"] == (
        f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{TENANT}"
    )
    assert first["Prefer"] == "odata.maxpagesize=1000"
    assert first["X-CmdletName"] == "Get-User"
    # A token is fetched per request (the provider caches; it decides when to refresh).
    assert [c["headers"]["Authorization"] for c in session.calls] == [
        "Bearer token-1",
        "Bearer token-2",
        "Bearer token-3",
    ]
    assert all(c["allow_redirects"] is False for c in session.calls)


@pytest.mark.parametrize(
    "link",
    [
        "https://attacker.example/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand?$skiptoken=x",
        "http://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand",
        "https://outlook.office365.com:8443/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand",
        "https://outlook.office365.com/other/path",
    ],
)
def test_next_link_elsewhere_is_refused_before_any_request(link: str) -> None:
    client, session = make_client([page([{"Name": "a"}], link)])
    with pytest.raises(ExoProtocolError, match=r"refusing to follow @odata\.nextLink"):
        list(client.iter_pages("Get-User", {}))
    assert len(session.calls) == 1


def test_same_next_link_twice_is_an_error_not_a_loop() -> None:
    link = f"{BASE}/InvokeCommand?$skiptoken=a"
    client, _ = make_client([page([], link), page([], link)])
    with pytest.raises(ExoProtocolError, match="same nextLink twice"):
        list(client.iter_pages("Get-User", {}))


def test_write_bodies_and_empty_answers() -> None:
    client, session = make_client(
        [
            FakeResponse(204, b""),
            FakeResponse(200, {"@adminapi.warnings": []}),
            FakeResponse(200, b"<html>"),
        ]
    )
    for _ in range(3):
        assert (
            client.invoke_write("Set-User", {"Identity": "g", "AuthenticationPolicy": None}) == []
        )
    assert "Prefer" not in session.calls[0]["headers"]
    assert json.loads(session.calls[0]["data"]) == {
        "CmdletInput": {
            "CmdletName": "Set-User",
            "Parameters": {"Identity": "g", "AuthenticationPolicy": None},
        }
    }


def test_batch_body_and_per_member_results() -> None:
    members = {
        "responses": [
            {
                "id": "1",
                "status": 404,
                "headers": {},
                "body": {
                    "error": {
                        "code": "NotFound",
                        "details": [
                            {
                                "message": "x|Microsoft.Exchange.Configuration.Tasks."
                                "ManagementObjectNotFoundException|gone"
                            }
                        ],
                    }
                },
            },
            {"id": "0", "status": 200, "headers": {}, "body": {"value": []}},
            {"id": "2", "status": 429, "headers": {"Retry-After": "0.5"}, "body": None},
        ]
    }
    client, session = make_client([FakeResponse(200, members)])
    items = [BatchItem("Set-User", {"Identity": str(i)}) for i in range(3)]
    outcomes = client.batch(items)
    assert [o.ok for o in outcomes] == [True, False, False]
    assert type(outcomes[1].error).__name__ == "ExoNotFoundError"
    assert type(outcomes[2].error).__name__ == "ExoThrottledError"
    assert outcomes[2].error.retry_after == 0.5  # type: ignore[union-attr]
    sent = json.loads(session.calls[0]["data"])
    assert session.calls[0]["url"] == f"{BASE}/$batch"
    assert [r["id"] for r in sent["requests"]] == ["0", "1", "2"]
    assert all(
        r["url"] == f"{BASE}/InvokeCommand" and r["method"] == "POST" for r in sent["requests"]
    )
    assert (
        sent["requests"][0]["headers"]["Prefer"] == "odata.maxpagesize=1000;odata.continue-on-error"
    )
    assert session.calls[0]["headers"]["Prefer"] == "odata.continue-on-error"
    with pytest.raises(ValueError):
        client.batch([BatchItem("Set-User", {})] * 11)


def test_claims_challenge_is_extracted() -> None:
    from reconciler.tenant.exo.client import claims_challenge

    raw = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    import base64

    encoded = base64.b64encode(raw.encode()).decode()
    assert (
        claims_challenge(f'Bearer realm="", error="insufficient_claims", claims="{encoded}"') == raw
    )
    assert claims_challenge('Bearer error="invalid_token"') is None


@pytest.mark.parametrize("status", [500, 502, 504])
def test_write_answered_with_a_server_error_is_ambiguous_and_not_resent(status: int) -> None:
    from reconciler.tenant.exo.errors import ExoConnectionError

    client, session = make_client([FakeResponse(status, b"<html>")])
    with pytest.raises(ExoConnectionError) as err:
        client.invoke_write("Set-User", {"Identity": "g"})
    assert err.value.maybe_sent is True
    assert len(session.calls) == 1


def test_write_refused_with_503_or_429_is_sent_again() -> None:
    client, session = make_client(
        [
            FakeResponse(503, b"<html>"),
            FakeResponse(429, b"", {"Retry-After": "0.01"}),
            FakeResponse(200, {"value": []}),
        ]
    )
    assert client.invoke_write("Set-User", {"Identity": "g"}) == []
    assert len(session.calls) == 3
    assert len({c["headers"]["client-request-id"] for c in session.calls}) == 1
    assert client.stats.as_dict()["throttled"] == 1
