"""The emulator's pessimistic readings, on the wire (docs/emulator.md "Unverified behaviours").

tests/emulator/conftest.py pins the plain readings for the cmdlet tests; each test here turns
one behaviour back to its default (or another value) and reads the raw answers.
"""

from __future__ import annotations

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from tests.emulator.conftest import AdminClient, details_message, session_for

pytestmark = pytest.mark.integration

PAGED = {"ResultSize": "Unlimited"}


def test_defaults_are_the_pessimistic_readings() -> None:
    settings = EmulatorSettings()
    assert settings.missing_identity_returns_all is True
    assert settings.next_link_style == "backend_host"
    assert settings.redirect_to_backend is True
    assert settings.batch_member_auth == "required"
    assert settings.policy_reference_format == "rotate"
    assert settings.cursor_affinity == "strict"
    assert settings.set_user_refuses == ("GuestMailUser", "MailUser")


@pytest.mark.parametrize("cmdlet", ["Get-User", "Get-Recipient", "Get-CASMailbox"])
def test_a_missing_identity_returns_every_object(
    emu: Emulator, client: AdminClient, cmdlet: str
) -> None:
    emu.set_faults(missing_identity_returns_all=True)
    body = client.ok(cmdlet, {"Identity": "no-such-object"}, page_size=1000)
    assert len(body["value"]) > 1
    emu.set_faults(missing_identity_returns_all=False)
    response = client.post(cmdlet, {"Identity": "no-such-object"})
    assert response.status_code == 404


def test_the_front_host_redirects_to_the_backend(emu: Emulator, client: AdminClient) -> None:
    emu.set_faults(redirect_to_backend=True)
    session = session_for(emu)
    body = {"CmdletInput": {"CmdletName": "Get-OrganizationConfig", "Parameters": {}}}
    headers = {"Authorization": f"Bearer {client.token}"}
    front = session.post(client.url, json=body, headers=headers, allow_redirects=False)
    assert front.status_code == 307
    location = front.headers["Location"]
    assert location == client.url.replace("https://127.0.0.1:", "https://localhost:")
    back = session.post(location, json=body, headers=headers, allow_redirects=False)
    assert back.status_code == 200  # the certificate names localhost too; no second redirect
    assert emu.stats()["requests"]["-"] == {"307": 1}


@pytest.mark.parametrize(
    ("style", "host", "segment"),
    [
        ("echo", "127.0.0.1", "called"),
        ("guid", "127.0.0.1", "guid"),
        ("domain", "127.0.0.1", "domain"),
        ("backend_host", "localhost", "called"),
    ],
)
def test_next_link_forms(
    emu: Emulator, writer_token: str, style: str, host: str, segment: str
) -> None:
    emu.set_faults(next_link_style=style)
    client = AdminClient(emu, writer_token, tenant=emu.tenant_domain)
    link = client.ok("Get-User", PAGED, page_size=100, select="Name")["@odata.nextLink"]
    expected = {"called": emu.tenant_domain, "guid": emu.tenant_id, "domain": emu.tenant_domain}
    port = emu.endpoint.rsplit(":", 1)[1]
    prefix = f"https://{host}:{port}/adminapi/beta/{expected[segment]}/InvokeCommand?"
    assert link.startswith(prefix)
    assert client.ok("Get-User", PAGED, page_size=100, url=link)["value"]


def test_strict_cursors_work_once_and_only_with_their_anchor(
    emu: Emulator, client: AdminClient
) -> None:
    emu.set_faults(cursor_affinity="strict")
    link = client.ok("Get-User", PAGED, page_size=100, select="Name")["@odata.nextLink"]
    assert client.post("Get-User", PAGED, page_size=100, url=link).status_code == 200
    replay = client.post("Get-User", PAGED, page_size=100, url=link)
    assert replay.status_code == 400
    assert "Expired or Invalid pagination request" in replay.text
    # Another X-AnchorMailbox than the first page's: refused too.
    session = session_for(emu)
    first = session.post(
        client.url,
        json={"CmdletInput": {"CmdletName": "Get-User", "Parameters": PAGED}},
        headers={
            "Authorization": f"Bearer {client.token}",
            "Prefer": "odata.maxpagesize=100",
            "X-AnchorMailbox": "APP:one@contoso.onmicrosoft.com",
        },
    ).json()
    other = session.post(
        first["@odata.nextLink"],
        json={"CmdletInput": {"CmdletName": "Get-User", "Parameters": PAGED}},
        headers={
            "Authorization": f"Bearer {client.token}",
            "X-AnchorMailbox": "APP:two@contoso.onmicrosoft.com",
        },
    )
    assert other.status_code == 400
    emu.set_faults(cursor_affinity="lenient")
    link = client.ok("Get-User", PAGED, page_size=100, select="Name")["@odata.nextLink"]
    for _ in range(2):
        assert client.post("Get-User", PAGED, page_size=100, url=link).status_code == 200


@pytest.mark.parametrize("mode", ["required", "ignored"])
def test_batch_member_tokens(emu: Emulator, client: AdminClient, mode: str) -> None:
    emu.set_faults(batch_member_auth=mode)
    member = {
        "id": "1",
        "method": "POST",
        "url": client.url,
        "headers": {},
        "body": {"CmdletInput": {"CmdletName": "Get-OrganizationConfig", "Parameters": {}}},
    }
    with_token = {**member, "id": "2", "headers": {"Authorization": f"Bearer {client.token}"}}
    answer = session_for(emu).post(
        client.url.replace("InvokeCommand", "$batch"),
        json={"requests": [member, with_token]},
        headers={"Authorization": f"Bearer {client.token}"},
    )
    statuses = [r["status"] for r in answer.json()["responses"]]
    assert statuses == ([401, 200] if mode == "required" else [200, 200])


@pytest.mark.parametrize(
    ("form", "kind"),
    [("name", str), ("dn", str), ("guid", str), ("object", dict)],
)
def test_reference_forms(emu: Emulator, client: AdminClient, form: str, kind: type) -> None:
    emu.set_faults(policy_reference_format=form)
    policy = client.ok("Get-AuthenticationPolicy", {"Identity": "Block Basic Auth"})["value"][0]
    expected = {
        "name": policy["Name"],
        "dn": policy["DistinguishedName"],
        "guid": policy["Guid"],
        "object": {
            "Name": policy["Name"],
            "DistinguishedName": policy["DistinguishedName"],
            "ObjectGuid": policy["Guid"],
        },
    }[form]
    org = client.ok("Get-OrganizationConfig")["value"][0]
    assert isinstance(org["DefaultAuthenticationPolicy"], kind)
    assert org["DefaultAuthenticationPolicy"] == expected
    user = client.ok("Get-User", {"Identity": "breakglass"})["value"][0]
    assert user["AuthenticationPolicy"] == expected


def test_rotating_reference_forms_change_between_requests(
    emu: Emulator, client: AdminClient
) -> None:
    emu.set_faults(policy_reference_format="rotate")
    seen = [
        repr(client.ok("Get-OrganizationConfig")["value"][0]["DefaultAuthenticationPolicy"])
        for _ in range(4)
    ]
    assert len(set(seen)) == 4


def test_set_user_refuses_mail_users(emu: Emulator, client: AdminClient) -> None:
    emu.set_faults(set_user_refuses=("MailUser",))
    users = client.ok("Get-User", {"RecipientTypeDetails": "MailUser"}, select="Name")["value"]
    name = users[0]["Name"]
    response = client.post("Set-User", {"Identity": name, "AuthenticationPolicy": None})
    assert response.status_code == 400
    assert details_message(response) == (
        "Ex2B7E40|Microsoft.Exchange.Configuration.Tasks.TaskInvalidOperationException|"
        f"The authentication policy can't be set on '{name}' because its recipient type is "
        "MailUser."
    )
    # Other parameters of Set-User still work for them.
    assert client.post("Set-User", {"Identity": name, "Department": "X"}).status_code == 200


def test_joiners_and_leavers(emu: Emulator, client: AdminClient) -> None:
    session = session_for(emu)
    answer = session.post(f"{emu.endpoint}/_emulator/users", json={"add": 3})
    assert answer.status_code == 200
    added = answer.json()["added"]
    assert added == ["joiner-1@contoso.com", "joiner-2@contoso.com", "joiner-3@contoso.com"]
    user = client.ok("Get-User", {"Identity": added[0]})["value"][0]
    assert user["AuthenticationPolicy"] is None  # as Exchange creates them
    assert user["RecipientTypeDetails"] == "UserMailbox"
    gone = session.post(f"{emu.endpoint}/_emulator/users", json={"remove": [added[1]]})
    assert gone.json() == {"added": [], "removed": [added[1]]}
    assert client.post("Get-User", {"Identity": added[1]}).status_code == 404
    bad = session.post(f"{emu.endpoint}/_emulator/users", json={"remove": ["nobody@x"]})
    assert bad.status_code == 400 and bad.json() == {"error": "no such user: nobody@x"}
    assert emu.add_users(1) == ["joiner-2@contoso.com"]  # the freed name is used again
