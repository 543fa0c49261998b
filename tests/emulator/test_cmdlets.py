"""Each cmdlet's success and error shapes, over HTTPS (reconciler/emulator/cmdlets.py)."""

from __future__ import annotations

import re

import pytest

from reconciler.emulator import Emulator
from tests.emulator.conftest import AdminClient, details_message

pytestmark = pytest.mark.integration

NOT_FOUND = (
    "Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|"
    "The operation couldn't be performed because object '{0}' couldn't be found on "
    "'EMU01A001DC001.EMULATOR01A001.PROD.OUTLOOK.COM'."
)
DATE_7 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00$")
SWITCHES = [
    "AllowBasicAuthActiveSync",
    "AllowBasicAuthAutodiscover",
    "AllowBasicAuthImap",
    "AllowBasicAuthMapi",
    "AllowBasicAuthOfflineAddressBook",
    "AllowBasicAuthOutlookService",
    "AllowBasicAuthPop",
    "AllowBasicAuthPowershell",
    "AllowBasicAuthReportingWebServices",
    "AllowBasicAuthRpc",
    "AllowBasicAuthSmtp",
    "AllowBasicAuthWebServices",
]


def _policy(client: AdminClient, name: str) -> dict:
    return next(p for p in client.ok("Get-AuthenticationPolicy")["value"] if p["Name"] == name)


def _user(client: AdminClient, identity: str) -> dict:
    return client.ok("Get-User", {"Identity": identity})["value"][0]


# -------------------------------------------------------------------- envelope and shapes
def test_envelope_and_policy_shape(client: AdminClient, emu: Emulator) -> None:
    body = client.ok("Get-AuthenticationPolicy")
    assert body["@odata.context"] == (
        f"{emu.endpoint}/adminapi/beta/{emu.tenant_id}/$metadata#Collection(Exchange.GenericHashTable)"
    )
    assert body["adminapi.warnings@odata.type"] == "#Collection(String)"
    assert body["@adminapi.warnings"] == []
    assert [p["Name"] for p in body["value"]] == [
        "Legacy 2018 Policy",
        "Block Basic Auth",
        "SMTP relay devices",
    ]
    block = body["value"][1]
    assert block["Identity"] == "Block Basic Auth"
    assert block["DistinguishedName"].startswith(
        "CN=Block Basic Auth,CN=Auth Policies,CN=Configuration,CN=contoso.onmicrosoft.com,"
        "CN=ConfigurationUnits,"
    )
    assert {s for s in SWITCHES if block[s]} == {"AllowBasicAuthImap", "AllowBasicAuthSmtp"}
    assert block["AllowBasicAuthRest"] is False
    assert DATE_7.match(block["WhenCreated"])
    assert block["Guid@odata.type"] == "#Guid"


def test_user_shape(client: AdminClient) -> None:
    user = _user(client, "breakglass@contoso.com")
    assert user["Identity"] == user["Name"] == "breakglass"
    assert user["UserPrincipalName"] == "breakglass@contoso.com"
    assert len({user["Guid"], user["ExchangeObjectId"], user["ExternalDirectoryObjectId"]}) == 3
    assert user["AuthenticationPolicy"] == "Block Basic Auth"
    assert user["RecipientTypeDetails"] == "UserMailbox"
    assert user["DistinguishedName"].startswith("CN=breakglass,OU=contoso.onmicrosoft.com,")
    assert DATE_7.match(user["WhenCreated"])


def test_organization_config(client: AdminClient, emu: Emulator) -> None:
    body = client.ok("Get-OrganizationConfig")
    assert len(body["value"]) == 1
    org = body["value"][0]
    assert org["Identity"] == org["Name"] == emu.tenant_domain
    assert org["DefaultAuthenticationPolicy"] == "Block Basic Auth"


def test_transport_and_cas_mailbox(client: AdminClient, emu: Emulator) -> None:
    # Never set by the admin: Microsoft's default-off is a service-side switch (hidden)...
    transport = client.ok("Get-TransportConfig")["value"][0]
    assert "SmtpClientAuthenticationDisabled" in transport
    assert transport["SmtpClientAuthenticationDisabled"] is None
    # ...or shows as the org flag flipped (org_flag).
    emu.set_faults(smtp_default_off="org_flag")
    transport = client.ok("Get-TransportConfig")["value"][0]
    assert transport["SmtpClientAuthenticationDisabled"] is True
    cas = client.ok("Get-CASMailbox", {"Identity": "scanner-01@contoso.com"})["value"][0]
    assert cas["SmtpClientAuthenticationDisabled"] is False
    query = {"Filter": "SmtpClientAuthenticationDisabled -eq $false", "ResultSize": "Unlimited"}
    # Get-CASMailbox -Filter is refused by default (only Get-User's filter is documented)...
    refused = client.post("Get-CASMailbox", query)
    assert refused.status_code == 400 and "Invalid filter syntax" in refused.text
    # ...and served as Get-User's under mailbox_filters=supported.
    emu.set_faults(mailbox_filters="supported")
    filtered = client.ok("Get-CASMailbox", query)["value"]
    others = [c["Name"] for c in filtered if not c["Name"].startswith("scanner-")]
    assert len(filtered) > 3 and len(others) == 3  # the drifted relay-policy users


def test_set_cas_mailbox_and_transport(client: AdminClient, emu: Emulator) -> None:
    client.ok(
        "Set-CASMailbox", {"Identity": "scanner-01", "SmtpClientAuthenticationDisabled": None}
    )
    cas = client.ok("Get-CASMailbox", {"Identity": "scanner-01"})["value"][0]
    assert cas["SmtpClientAuthenticationDisabled"] is None
    client.ok("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": False})
    assert client.ok("Get-TransportConfig")["value"][0]["SmtpClientAuthenticationDisabled"] is False
    emu.set_faults(smtp_default_off="org_flag")  # an admin's value shows as set, whatever
    assert client.ok("Get-TransportConfig")["value"][0]["SmtpClientAuthenticationDisabled"] is False
    assert emu.stats()["writes_changed_state"] == 2


# ----------------------------------------------------------------------- policies
def test_new_policy_defaults_all_blocked_and_returns_object(client: AdminClient) -> None:
    body = client.ok("New-AuthenticationPolicy", {"Name": "Pilot", "AllowBasicAuthPop": True})
    created = body["value"][0]
    assert created["Name"] == "Pilot"
    assert {s for s in SWITCHES if created[s]} == {"AllowBasicAuthPop"}


def test_new_policy_duplicate_name_case_insensitive(client: AdminClient) -> None:
    response = client.post("New-AuthenticationPolicy", {"Name": "block basic auth"})
    assert response.status_code == 400
    message = details_message(response)
    assert message.startswith(
        "Ex5D1B3C|Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException|The object "
        "'CN=Block Basic Auth,CN=Auth Policies,"
    )
    assert message.endswith("' already exists.")


def test_new_policy_name_limit(client: AdminClient) -> None:
    assert client.post("New-AuthenticationPolicy", {"Name": "x" * 64}).status_code == 200
    response = client.post("New-AuthenticationPolicy", {"Name": "y" * 65})
    assert response.status_code == 400
    assert details_message(response) == (
        "|System.Management.Automation.ParameterBindingValidationException|Cannot validate "
        "argument on parameter 'Name'. The length of the argument is too long. Shorten the length "
        'of the argument to less than or equal to "64" and then try the command again.'
    )


def test_set_policy_changes_only_passed_switches(client: AdminClient, emu: Emulator) -> None:
    body = client.ok(
        "Set-AuthenticationPolicy",
        {"Identity": "block basic auth", "AllowBasicAuthImap": False, "AllowBasicAuthPop": "true"},
    )
    assert body["value"] == []
    policy = _policy(client, "Block Basic Auth")
    assert {s for s in SWITCHES if policy[s]} == {"AllowBasicAuthSmtp", "AllowBasicAuthPop"}
    log = emu.write_log()
    assert [(e["cmdlet"], e["target"], e["params"]) for e in log] == [
        (
            "Set-AuthenticationPolicy",
            "Block Basic Auth",
            {"AllowBasicAuthImap": False, "AllowBasicAuthPop": "true"},
        )
    ]


def test_set_policy_noop_warns_and_counts(client: AdminClient, emu: Emulator) -> None:
    body = client.ok(
        "Set-AuthenticationPolicy", {"Identity": "SMTP relay devices", "AllowBasicAuthSmtp": True}
    )
    assert body["@adminapi.warnings"] == [
        "The command completed successfully but no settings of 'SMTP relay devices' have been "
        "modified."
    ]
    stats = emu.stats()
    assert (stats["writes_changed_state"], stats["writes_noop"]) == (0, 1)


def test_set_policy_by_dn_and_guid(client: AdminClient) -> None:
    policy = _policy(client, "Legacy 2018 Policy")
    client.ok(
        "Set-AuthenticationPolicy",
        {"Identity": policy["DistinguishedName"], "AllowBasicAuthPop": False},
    )
    client.ok("Set-AuthenticationPolicy", {"Identity": policy["Guid"], "AllowBasicAuthImap": False})
    after = _policy(client, "Legacy 2018 Policy")
    assert (after["AllowBasicAuthPop"], after["AllowBasicAuthImap"]) == (False, False)


def test_set_policy_cannot_rename(client: AdminClient) -> None:
    response = client.post(
        "Set-AuthenticationPolicy", {"Identity": "Block Basic Auth", "Name": "New"}
    )
    assert response.status_code == 400
    assert details_message(response) == (
        "|Microsoft.Exchange.AdminApi.CommandInvocation.AmbiguousParameterSetException|Parameter "
        "set cannot be resolved using the specified named parameters. A parameter cannot be found "
        "that matches parameter name 'Name' for cmdlet 'Set-AuthenticationPolicy'."
    )


def test_set_policy_not_found(client: AdminClient) -> None:
    response = client.post(
        "Set-AuthenticationPolicy", {"Identity": "Nope", "AllowBasicAuthPop": True}
    )
    assert response.status_code == 404
    body = response.json()["error"]
    assert (body["code"], body["message"]) == ("NotFound", "Error executing cmdlet")
    assert details_message(response) == NOT_FOUND.format("Nope")


def test_bad_switch_value_is_transformation_error(client: AdminClient) -> None:
    response = client.post(
        "Set-AuthenticationPolicy", {"Identity": "Pilot", "AllowBasicAuthPop": "maybe"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "details" not in error
    assert error["innererror"]["internalexception"]["type"] == (
        "Microsoft.Exchange.AdminApi.CommandInvocation.ParameterTransformationException"
    )


def test_null_reference_bug_setting(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(null_reference_policies=["Block Basic Auth"])
    response = client.post(
        "Set-AuthenticationPolicy", {"Identity": "Block Basic Auth", "AllowBasicAuthImap": False}
    )
    assert response.status_code == 400
    assert details_message(response) == (
        "|System.NullReferenceException|Object reference not set to an instance of an object."
    )
    assert _policy(client, "Block Basic Auth")["AllowBasicAuthImap"] is True
    ok = client.post(
        "Set-AuthenticationPolicy", {"Identity": "SMTP relay devices", "AllowBasicAuthPop": False}
    )
    assert ok.status_code == 200
    emu.set_faults(null_reference_policies=["*"])
    assert (
        client.post("Set-AuthenticationPolicy", {"Identity": "SMTP relay devices"}).status_code
        == 400
    )


def test_get_policy_missing_identity_returns_all_by_default(
    client: AdminClient, emu: Emulator
) -> None:
    assert len(client.ok("Get-AuthenticationPolicy", {"Identity": "Nope"})["value"]) == 3
    assert [
        p["Name"]
        for p in client.ok("Get-AuthenticationPolicy", {"Identity": "smtp relay devices"})["value"]
    ] == ["SMTP relay devices"]
    emu.set_faults(missing_policy_identity_returns_all=False)
    response = client.post("Get-AuthenticationPolicy", {"Identity": "Nope"})
    assert response.status_code == 404


def test_remove_unreferenced_policy(client: AdminClient) -> None:
    client.ok("Remove-AuthenticationPolicy", {"Identity": "Legacy 2018 Policy", "Confirm": False})
    names = [p["Name"] for p in client.ok("Get-AuthenticationPolicy")["value"]]
    assert names == ["Block Basic Auth", "SMTP relay devices"]


def test_remove_referenced_policy_rejected_by_default(client: AdminClient) -> None:
    response = client.post("Remove-AuthenticationPolicy", {"Identity": "Block Basic Auth"})
    assert response.status_code == 400
    message = details_message(response)
    assert message.startswith(
        "Ex3A6C21|Microsoft.Exchange.Configuration.Tasks.TaskInvalidOperationException|The "
        "authentication policy 'Block Basic Auth' can't be removed because it's assigned to "
    )
    assert message.endswith("and it's the organization's default authentication policy.")


def test_remove_referenced_policy_clear(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(remove_referenced="clear")
    client.ok("Remove-AuthenticationPolicy", {"Identity": "SMTP relay devices"})
    assert _user(client, "scanner-01")["AuthenticationPolicy"] is None


def test_remove_referenced_policy_orphan(client: AdminClient, emu: Emulator) -> None:
    emu.set_faults(remove_referenced="orphan")
    guid = _policy(client, "Block Basic Auth")["Guid"]
    client.ok("Remove-AuthenticationPolicy", {"Identity": "Block Basic Auth"})
    # The dangling link shows the deleted policy's GUID, never a name that could be re-created.
    assert _user(client, "breakglass")["AuthenticationPolicy"] == guid
    assert client.ok("Get-OrganizationConfig")["value"][0]["DefaultAuthenticationPolicy"] == guid


def test_confirm_true_changes_nothing(client: AdminClient, emu: Emulator) -> None:
    body = client.ok(
        "Remove-AuthenticationPolicy", {"Identity": "Legacy 2018 Policy", "Confirm": True}
    )
    assert body["@adminapi.confirmationmessage"].startswith(
        "Are you sure you want to perform this action?"
    )
    client.ok("Set-User", {"Identity": "breakglass", "AuthenticationPolicy": None, "Confirm": True})
    assert len(client.ok("Get-AuthenticationPolicy")["value"]) == 3
    assert _user(client, "breakglass")["AuthenticationPolicy"] == "Block Basic Auth"
    stats = emu.stats()
    assert (stats["writes_changed_state"], stats["writes_dry_run"]) == (0, 2)


# ---------------------------------------------------------------------- org default
@pytest.mark.parametrize("form", ["Name", "DistinguishedName", "Guid"])
def test_set_default_by_name_dn_guid(client: AdminClient, form: str) -> None:
    identity = _policy(client, "SMTP relay devices")[form]
    client.ok("Set-OrganizationConfig", {"DefaultAuthenticationPolicy": identity})
    org = client.ok("Get-OrganizationConfig")["value"][0]
    assert org["DefaultAuthenticationPolicy"] == "SMTP relay devices"


def test_clear_default_and_unknown_default(client: AdminClient) -> None:
    client.ok("Set-OrganizationConfig", {"DefaultAuthenticationPolicy": None})
    assert client.ok("Get-OrganizationConfig")["value"][0]["DefaultAuthenticationPolicy"] is None
    response = client.post("Set-OrganizationConfig", {"DefaultAuthenticationPolicy": "Nope"})
    assert details_message(response) == NOT_FOUND.format("Nope")


# ---------------------------------------------------------------------------- users
def test_get_user_identity_forms(client: AdminClient, emu: Emulator) -> None:
    user = _user(client, "breakglass@contoso.com")
    for identity in ("BREAKGLASS", user["DistinguishedName"], user["Guid"]):
        assert _user(client, identity)["Guid"] == user["Guid"]
    response = client.post("Get-User", {"Identity": user["ExternalDirectoryObjectId"]})
    assert response.status_code == 404  # conservative default
    emu.set_faults(accept_external_directory_object_id=True)
    assert _user(client, user["ExternalDirectoryObjectId"])["Guid"] == user["Guid"]


def test_get_user_not_found(client: AdminClient) -> None:
    response = client.post("Get-User", {"Identity": "ghost@contoso.com"})
    assert response.status_code == 404
    assert details_message(response) == NOT_FOUND.format("ghost@contoso.com")


def test_get_user_filter_by_policy_dn(client: AdminClient) -> None:
    dn = _policy(client, "SMTP relay devices")["DistinguishedName"]
    holders = client.ok(
        "Get-User", {"Filter": f"AuthenticationPolicy -eq '{dn}'", "ResultSize": "Unlimited"}
    )["value"]
    assert holders and {u["AuthenticationPolicy"] for u in holders} == {"SMTP relay devices"}
    by_name = client.ok("Get-User", {"Filter": "AuthenticationPolicy -eq 'SMTP relay devices'"})
    assert by_name["value"] == []  # a name matches nothing (reference semantics §3.3)
    unassigned = client.ok(
        "Get-User", {"Filter": "AuthenticationPolicy -eq $null", "ResultSize": "Unlimited"}
    )["value"]
    assert unassigned and all(u["AuthenticationPolicy"] is None for u in unassigned)


def test_get_user_filter_recipient_type_and_and(client: AdminClient) -> None:
    rooms = client.ok(
        "Get-User",
        {
            "Filter": "RecipientTypeDetails -eq 'RoomMailbox' -and Department -ne 'x'",
            "ResultSize": "Unlimited",
        },
    )["value"]
    assert rooms and {u["RecipientTypeDetails"] for u in rooms} == {"RoomMailbox"}
    upn = client.ok("Get-User", {"Filter": "UserPrincipalName -eq 'breakglass@contoso.com'"})[
        "value"
    ]
    assert [u["Name"] for u in upn] == ["breakglass"]


def test_get_user_bad_filter(client: AdminClient) -> None:
    response = client.post("Get-User", {"Filter": "Department -eq"})
    assert response.status_code == 400
    assert "Invalid filter syntax" in details_message(response)
    response = client.post("Get-User", {"Filter": "Shoe -eq 'x'"})
    assert "'Shoe' is not a recognized filterable property" in details_message(response)


def test_get_user_bad_enum(client: AdminClient) -> None:
    response = client.post("Get-User", {"RecipientTypeDetails": "Robot"})
    assert response.status_code == 400
    inner = response.json()["error"]["innererror"]["internalexception"]
    assert (
        "Unable to match the identifier name Robot to a valid enumerator name." in inner["message"]
    )
    assert "UserMailbox" in inner["message"]


def test_get_user_default_result_size_is_1000(emu: Emulator, client: AdminClient) -> None:
    body = client.ok("Get-User", {"ResultSize": 5})
    assert len(body["value"]) == 5
    assert "@odata.nextLink" not in body
    assert body["@adminapi.warnings"] == [
        "There are more results available than are currently displayed. To view them, increase "
        "the value for the ResultSize parameter."
    ]
    assert client.post("Get-User", {"ResultSize": "lots"}).status_code == 400


def test_set_user_assign_clear_and_sts(client: AdminClient, emu: Emulator) -> None:
    client.ok(
        "Set-User",
        {"Identity": "breakglass@contoso.com", "AuthenticationPolicy": "SMTP relay devices"},
    )
    assert _user(client, "breakglass")["AuthenticationPolicy"] == "SMTP relay devices"
    client.ok(
        "Set-User",
        {
            "Identity": "breakglass",
            "AuthenticationPolicy": None,
            "STSRefreshTokensValidFrom": "2026-05-22T16:52:10",
        },
    )
    user = _user(client, "breakglass")
    assert user["AuthenticationPolicy"] is None
    assert user["StsRefreshTokensValidFrom"] == "2026-05-22T16:52:10.0000000+00:00"
    assert [e["params"] for e in emu.write_log()] == [
        {"AuthenticationPolicy": "SMTP relay devices"},
        {"AuthenticationPolicy": None, "STSRefreshTokensValidFrom": "2026-05-22T16:52:10"},
    ]


def test_set_user_errors(client: AdminClient) -> None:
    response = client.post("Set-User", {"Identity": "ghost", "AuthenticationPolicy": None})
    assert details_message(response) == NOT_FOUND.format("ghost")
    response = client.post("Set-User", {"Identity": "breakglass", "AuthenticationPolicy": "Nope"})
    assert details_message(response) == NOT_FOUND.format("Nope")
    response = client.post(
        "Set-User", {"Identity": "breakglass", "STSRefreshTokensValidFrom": "soon"}
    )
    assert response.status_code == 400
    response = client.post("Set-User", {"Identity": "breakglass", "Bogus": 1})
    assert "matches parameter name 'Bogus'" in details_message(response)
    response = client.post("Set-User", {"AuthenticationPolicy": None})
    assert "missing mandatory parameter 'Identity'" in details_message(response)


def test_set_user_noop(client: AdminClient, emu: Emulator) -> None:
    body = client.ok(
        "Set-User", {"Identity": "breakglass", "AuthenticationPolicy": "Block Basic Auth"}
    )
    assert body["@adminapi.warnings"] == [
        "The command completed successfully but no settings of 'breakglass@contoso.com' have been "
        "modified."
    ]
    assert emu.stats()["writes_noop"] == 1
    assert emu.write_log() == []


def test_cmdlet_and_parameter_names_case_insensitive(client: AdminClient) -> None:
    body = client.ok("get-user", {"identity": "breakglass", "resultsize": 1})
    assert body["value"][0]["Name"] == "breakglass"


# ------------------------------------------------------------------- recipients, groups
def test_get_recipient_and_groups(client: AdminClient) -> None:
    group = client.ok("Get-Recipient", {"Identity": "SMTP Exceptions"})["value"][0]
    assert group["RecipientTypeDetails"] == "MailUniversalSecurityGroup"
    members = client.ok("Get-DistributionGroupMember", {"Identity": "SMTP Exceptions"})["value"]
    assert "Line-of-business apps" in [m["Name"] for m in members]
    nested = client.ok("Get-DistributionGroupMember", {"Identity": "Line-of-business apps"})[
        "value"
    ]
    assert nested and all(m["RecipientType"] == "UserMailbox" for m in nested)
    groups = client.ok("Get-Recipient", {"RecipientTypeDetails": "MailUniversalDistributionGroup"})[
        "value"
    ]
    assert "Finance Team" in [g["Name"] for g in groups]


def test_group_cycle_exists(client: AdminClient) -> None:
    team = client.ok("Get-DistributionGroupMember", {"Identity": "Finance Team"})["value"]
    approvers = client.ok("Get-DistributionGroupMember", {"Identity": "Finance Approvers"})["value"]
    assert "Finance Approvers" in [m["Name"] for m in team]
    assert "Finance Team" in [m["Name"] for m in approvers]


def test_unified_group_links(client: AdminClient) -> None:
    members = client.ok(
        "Get-UnifiedGroupLinks", {"Identity": "Project Phoenix", "LinkType": "Members"}
    )["value"]
    assert len(members) == 12
    response = client.post(
        "Get-UnifiedGroupLinks", {"Identity": "Project Phoenix", "LinkType": "Fans"}
    )
    assert response.status_code == 400
    response = client.post("Get-DistributionGroupMember", {"Identity": "Project Phoenix"})
    assert response.status_code == 404


def test_recipient_and_cas_mailbox_errors(client: AdminClient) -> None:
    response = client.post("Get-Recipient", {"Identity": "nobody@contoso.com"})
    assert response.status_code == 404
    assert details_message(response) == NOT_FOUND.format("nobody@contoso.com")
    response = client.post("Get-Recipient", {"RecipientType": "Spaceship"})
    assert response.status_code == 400
    assert (
        "Specify one of the following enumerator names"
        in (response.json()["error"]["innererror"]["internalexception"]["message"])
    )
    # A mailbox-less user has no CAS mailbox.
    plain = client.ok("Get-User", {"RecipientTypeDetails": "User", "ResultSize": 1})["value"][0]
    response = client.post("Get-CASMailbox", {"Identity": plain["UserPrincipalName"]})
    assert details_message(response) == NOT_FOUND.format(plain["UserPrincipalName"])
    response = client.post(
        "Set-CASMailbox", {"Identity": "scanner-01", "SmtpClientAuthenticationDisabled": "x"}
    )
    assert response.status_code == 400
    response = client.post("Get-TransportConfig", {"Bogus": True})
    assert "matches parameter name 'Bogus'" in details_message(response)
