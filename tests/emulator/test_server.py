"""Wire behaviour of the server: paging, $select, $batch, throttling, faults, control API."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from reconciler.emulator import Emulator, EmulatorSettings
from tests.emulator.conftest import SCOPE, AdminClient, msal_app, raw_body, session_for

pytestmark = pytest.mark.integration

CONCURRENCY_TEXT = (
    "You have reached the maximum number of concurrent requests per tenant. Please wait and try "
    "again."
)
MORE = (
    "There are more results available than are currently displayed. To view them, increase the "
    "value for the ResultSize parameter."
)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=25_000, seed=3, state_dir=tmp_path_factory.mktemp("big"), save_on_exit=False
    )
    with Emulator(settings) as emu:
        yield emu


def test_paging_25000_users_at_1000_a_page(big: Emulator) -> None:
    token = msal_app(big).acquire_token_for_client(scopes=SCOPE)["access_token"]
    client = AdminClient(big, token)
    params = {"ResultSize": "Unlimited"}
    first = client.ok("Get-User", params, page_size=1000, select="ExternalDirectoryObjectId")
    assert len(first["value"]) == 1000
    assert "$skiptoken=" in first["@odata.nextLink"]
    assert first["@adminapi.warnings"] == [MORE]
    objects, pages = client.all_pages(
        "Get-User", params, page_size=1000, select="ExternalDirectoryObjectId"
    )
    assert pages == 25
    assert len({o["ExternalDirectoryObjectId"] for o in objects}) == 25_000
    last = client.ok("Get-User", params, page_size=1000, url=None, select="Name")
    assert last["value"]
    assert big.stats()["requests"]["Get-User"] == {"200": 27}


def test_page_size_capped_at_1000_and_result_size_honoured(big: Emulator) -> None:
    client = AdminClient(big, big.issue_access_token())
    body = client.ok("Get-User", {"ResultSize": "Unlimited"}, page_size=5000, select="Name")
    assert len(body["value"]) == 1000
    objects, pages = client.all_pages(
        "Get-User", {"ResultSize": 2500}, page_size=1000, select="Name"
    )
    assert (len(objects), pages) == (2500, 3)
    no_size = client.ok("Get-User", {}, select="Name")
    assert len(no_size["value"]) == 1000 and "@odata.nextLink" not in no_size
    assert no_size["@adminapi.warnings"] == [MORE]


def test_select_limits_properties_and_survives_paging(client: AdminClient) -> None:
    body = client.ok(
        "Get-User",
        {"ResultSize": 30},
        page_size=10,
        select="userprincipalname,Guid,AuthenticationPolicy",
    )
    assert set(body["value"][0]) == {
        "UserPrincipalName",
        "Guid",
        "Guid@odata.type",
        "Guid@data.type",
        "AuthenticationPolicy",
    }
    assert "$select=userprincipalname,Guid,AuthenticationPolicy" in body["@odata.nextLink"]
    second = client.ok("Get-User", {"ResultSize": 30}, page_size=10, url=body["@odata.nextLink"])
    assert set(second["value"][0]) == set(body["value"][0])


def test_next_link_replay_and_other_body(client: AdminClient) -> None:
    params = {"ResultSize": 30}
    body = client.ok("Get-User", params, page_size=10, select="Name")
    link = body["@odata.nextLink"]
    again = client.ok("Get-User", params, page_size=10, url=link)
    retried = client.ok("Get-User", params, page_size=10, url=link)  # a retried page
    assert again["value"] == retried["value"] and len(again["value"]) == 10
    response = client.post("Get-User", {"ResultSize": 31}, page_size=10, url=link)
    assert response.status_code == 400


def test_cursor_expiry(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(cursor_expiry_seconds=0.0)
    body = client.ok("Get-User", {"ResultSize": 30}, page_size=10)
    response = client.post(
        "Get-User", {"ResultSize": 30}, page_size=10, url=body["@odata.nextLink"]
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["innererror"]["internalexception"] == {
        "message": "Expired or Invalid pagination request. Default Expiry time is 00:30:00",
        "type": "System.Exception",
        "stacktrace": "",
    }


def _batch(client: AdminClient, requests_: list[dict]) -> requests.Response:
    return client.session.post(
        f"{client.emu.endpoint}/adminapi/beta/{client.tenant}/$batch",
        json={"requests": requests_},
        headers={"Authorization": f"Bearer {client.token}"},
    )


def _member(client: AdminClient, i: int, cmdlet: str, parameters: dict) -> dict:
    return {
        "id": str(i),
        "method": "POST",
        "url": client.url,
        "headers": {"Prefer": "odata.maxpagesize=1000;odata.continue-on-error"},
        "body": {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}},
    }


def test_batch(client: AdminClient, emu: Emulator) -> None:
    members = [
        _member(client, 0, "Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None}),
        _member(client, 1, "Get-User", {"Identity": "ghost"}),
        _member(client, 2, "Get-Mailbox", {}),
        _member(client, 3, "Get-OrganizationConfig", {}),
    ]
    response = _batch(client, members)
    assert response.status_code == 200
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert [answers[str(i)]["status"] for i in range(4)] == [200, 404, 403, 200]
    assert answers["3"]["body"]["value"][0]["DefaultAuthenticationPolicy"] == "Block Basic Auth"
    assert [e["target"] for e in emu.write_log()] == ["breakglass@contoso.com"]
    client.ok("Get-User", {"Identity": "breakglass"})  # not a member: not in batch_members
    stats = emu.stats()
    assert stats["batch_members"] == {
        "Get-Mailbox": 1,
        "Get-OrganizationConfig": 1,
        "Get-User": 1,
        "Set-User": 1,
    }
    assert stats["requests"]["Get-User"] == {"200": 1, "404": 1}


def test_batch_of_eleven_is_refused(client: AdminClient, emu: Emulator) -> None:
    members = [
        _member(client, i, "Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None})
        for i in range(11)
    ]
    response = _batch(client, members)
    assert response.status_code == 400
    assert "exceeds the maximum of 10" in response.json()["error"]["innererror"]["message"]
    assert emu.stats()["writes_changed_state"] == 0


def test_throttle_budget_429_with_decimal_retry_after(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(throttle_budget=2, throttle_window_seconds=30)
    assert client.post("Get-OrganizationConfig").status_code == 200
    assert client.post("Get-OrganizationConfig").status_code == 200
    response = client.post("Get-OrganizationConfig")
    assert response.status_code == 429
    retry_after = response.headers["Retry-After"]
    assert "." in retry_after and 0 < float(retry_after) <= 30
    assert emu.stats()["throttled"] == 1


def test_concurrency_cap(client: AdminClient, emu: Emulator) -> None:
    callers = [AdminClient(emu, client.token) for _ in range(2)]
    for caller in callers:  # open the keep-alive connections before the race
        caller.ok("Get-TransportConfig")
    emu.set_faults(max_concurrent_per_tenant=1, latency_base_ms=1500)
    barrier = threading.Barrier(2)
    answers: list[requests.Response] = []

    def call(caller: AdminClient) -> None:
        barrier.wait()
        answers.append(caller.post("Get-OrganizationConfig"))

    threads = [threading.Thread(target=call, args=(caller,)) for caller in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Both were sent together; the first holds the only slot for 1.5 s, so the other collides.
    assert sorted(a.status_code for a in answers) == [200, 429]
    rejected = next(a for a in answers if a.status_code == 429)
    assert rejected.text == CONCURRENCY_TEXT
    assert rejected.headers["Content-Type"].startswith("text/plain")
    assert emu.stats()["concurrency_rejected"] == 1


def test_one_shot_503_then_success(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(one_shot=["error_503", "error_504"])
    assert client.post("Get-OrganizationConfig").status_code == 503
    assert client.post("Get-OrganizationConfig").status_code == 504
    assert client.post("Get-OrganizationConfig").status_code == 200
    assert emu.stats()["faults_injected"] == {"error_503": 1, "error_504": 1}


def test_reset_before_write_changes_nothing(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(one_shot=["reset_before_write"])
    with pytest.raises(requests.ConnectionError):
        client.post("Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None})
    user = client.ok("Get-User", {"Identity": "breakglass"})["value"][0]
    assert user["AuthenticationPolicy"] == "Block Basic Auth"


def test_reset_after_write_commits(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(one_shot=["reset_after_write"])
    with pytest.raises(requests.ConnectionError):
        client.post("Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None})
    user = client.ok("Get-User", {"Identity": "breakglass"})["value"][0]
    assert user["AuthenticationPolicy"] is None
    assert emu.stats()["writes_changed_state"] == 1


def test_malformed_injections(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(one_shot=["non_json"])
    response = client.post("Get-OrganizationConfig")
    assert response.status_code == 200 and response.text.startswith("<html>")
    emu.set_faults(one_shot=["missing_value"])
    assert "value" not in client.ok("Get-OrganizationConfig")
    emu.set_faults(one_shot=["truncated_json"])
    with pytest.raises(ValueError):
        client.post("Get-OrganizationConfig").json()
    emu.set_faults(one_shot=["nul_gzip_403"])
    response = client.post("Get-OrganizationConfig")
    assert response.status_code == 403 and raw_body(response) == b"\x00" * 64
    emu.set_faults(one_shot=["foreign_next_link"])
    body = client.ok("Get-User", {"ResultSize": 20}, page_size=10)
    assert body["@odata.nextLink"].startswith("https://attacker.example:443/adminapi/beta/")


def test_write_response_modes(client: AdminClient, emu: Emulator) -> None:
    params = {"Identity": "SMTP relay devices", "AllowBasicAuthPop": False}
    emu.set_faults(write_response="absent")
    assert "value" not in client.ok("Set-AuthenticationPolicy", params)
    emu.set_faults(write_response="null")
    assert client.ok("Set-AuthenticationPolicy", params)["value"] is None
    emu.set_faults(write_response="no_content")
    response = client.post("Set-AuthenticationPolicy", params)
    assert (response.status_code, response.content) == (204, b"")


def test_bad_body_and_other_api_version(client: AdminClient, emu: Emulator) -> None:
    response = client.session.post(
        client.url, data=b"{not json", headers={"Authorization": f"Bearer {client.token}"}
    )
    assert response.status_code == 400
    v1 = client.url.replace("/beta/", "/v1.0/")
    assert client.post("Get-User", url=v1).status_code == 405


def test_control_api(emu: Emulator, client: AdminClient) -> None:
    session = session_for(emu)
    client.ok("Get-OrganizationConfig")
    stats = session.get(f"{emu.endpoint}/_emulator/stats").json()
    assert stats["requests"]["Get-OrganizationConfig"] == {"200": 1}
    state = session.get(f"{emu.endpoint}/_emulator/state").json()
    assert state["tenant"]["domain"] == "contoso.onmicrosoft.com"
    answer = session.post(f"{emu.endpoint}/_emulator/faults", json={"error_503_rate": 1.0})
    assert answer.json()["error_503_rate"] == 1.0
    assert client.post("Get-OrganizationConfig").status_code == 503
    bad = session.post(f"{emu.endpoint}/_emulator/faults", json={"users": 5})
    assert bad.status_code == 400 and "start-up-only" in bad.json()["error"]
    session.post(f"{emu.endpoint}/_emulator/faults", json={"error_503_rate": 0.0})
    session.post(f"{emu.endpoint}/_emulator/reset", json={})
    assert session.get(f"{emu.endpoint}/_emulator/stats").json()["requests_total"] == 0
    emu.set_faults(control_api=False)
    assert session.get(f"{emu.endpoint}/_emulator/stats").status_code == 404


def test_set_faults_rejects_unknown_and_bad_values(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown or start-up-only setting"):
        emu.set_faults(nonsense=1)
    with pytest.raises(ValueError, match="remove_referenced must be one of reject, orphan, clear"):
        emu.set_faults(remove_referenced="explode")
    with pytest.raises(ValueError, match="error_503_rate must be between 0 and 1"):
        emu.set_faults(error_503_rate=2)


def test_raw_http_details(emu: Emulator, writer_token: str) -> None:
    """Expect: 100-continue, chunked bodies, Connection: close and a bad request line."""
    import http.client
    import json
    import ssl

    context = ssl.create_default_context(cafile=str(emu.ca_path))
    host, port = emu.endpoint.removeprefix("https://").split(":")
    path = f"/adminapi/beta/{emu.tenant_id}/InvokeCommand"
    body = json.dumps({"CmdletInput": {"CmdletName": "Get-OrganizationConfig"}}).encode()
    headers = {"Authorization": f"Bearer {writer_token}", "Content-Type": "application/json"}

    conn = http.client.HTTPSConnection(host, int(port), context=context)
    conn.request("POST", path, body=iter([body[:10], body[10:]]), headers=headers)  # chunked
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["value"][0]["Name"] == emu.tenant_domain
    conn.request("POST", path, body=body, headers={**headers, "Connection": "close"})
    response = conn.getresponse()
    assert (response.status, response.getheader("Connection")) == (200, "close")
    response.read()
    conn.close()

    raw = context.wrap_socket(
        __import__("socket").create_connection((host, int(port))), server_hostname=host
    )
    raw.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Authorization: Bearer {writer_token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    assert raw.recv(64).startswith(b"HTTP/1.1 100 Continue")
    raw.sendall(body)
    raw.sendall(b"GARBAGE\r\n\r\n")  # after the real request, a malformed one
    received = b""
    while chunk := raw.recv(65536):  # the server answers both, then closes
        received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 400 Bad Request" in received
    assert received.rstrip().endswith(b"Connection: close")
    raw.close()
