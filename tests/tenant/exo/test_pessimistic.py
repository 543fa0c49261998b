"""The client under every value of the emulator's unverified behaviours (round2-facts.md §3).

Each test sets one behaviour to each of its values on top of the pessimistic defaults and
checks that the client reads and writes exactly as it should; tests/reliability/test_matrix.py
runs plan -> apply -> plan over the values and the pairs that interact.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.errors import AuthenticationError, TenantNotFoundError
from reconciler.model import SnapshotNeeds
from reconciler.tenant.base import UserWrite
from reconciler.tenant.exo.client import BatchItem, unique_rows
from reconciler.tenant.exo.errors import ExoPermissionError, ExoProtocolError
from reconciler.tenant.exo.snapshot import policy_keys, policy_name_from_reference
from reconciler.tenant.exo.tenant import ExoTenant
from tests.tenant.exo.conftest import USERS, connect

pytestmark = pytest.mark.integration

NEEDS = SnapshotNeeds(attributes=frozenset({"department"}), groups=frozenset({"SMTP Exceptions"}))


def _snapshot_key(tenant: ExoTenant) -> Any:
    snapshot = tenant.read_snapshot(NEEDS)
    return (
        snapshot.default_policy,
        tuple((u.id, u.policy, u.department) for u in snapshot.users),
        tuple(sorted(snapshot.groups["smtp exceptions"])),
    )


# --------------------------------------------------------------------------- 1. identities


def test_get_user_of_a_missing_identity_returns_everybody_and_the_client_sees_not_found(
    emu: Emulator,
) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    rows = tenant.client.invoke(
        "Get-User", {"Identity": "nobody-at-all"}, select=["ExternalDirectoryObjectId", "Guid"]
    )
    assert len(rows) == 1000  # the pessimistic reading: every object (ResultSize's default 1000)
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    victim = snapshot.users[5]
    # A Guid that names nobody: Get-User -Identity answers with every user...
    tenant._exchange_guids[victim.id] = "00000000-0000-0000-0000-000000000001"
    found = tenant._direct_policies([victim.id])
    # ...and the client takes none of them for the user it asked for.
    assert found == {victim.id: (False, None)}


def test_a_missing_group_is_not_mistaken_for_the_first_recipient(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    rows = tenant.client.invoke("Get-Recipient", {"Identity": "No Such Group"})
    assert len(rows) > 1  # every recipient
    with pytest.raises(TenantNotFoundError) as err:
        tenant.read_snapshot(SnapshotNeeds(groups=frozenset({"No Such Group"})))
    assert "the group 'No Such Group' named in the rules (member_of) does not exist" in str(
        err.value
    )


def test_a_user_deleted_before_the_write_is_not_found_not_applied(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="writer"))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    victim = next(u for u in snapshot.users if u.recipient_type == "UserMailbox")
    assert emu.remove_users([victim.upn]) == [victim.upn]  # a leaver, after the read
    try:
        results = tenant.set_user_policies([UserWrite(victim.id, "SMTP relay devices")])
        assert [r.status for r in results] == ["not_found"]
        assert emu.write_log() == []
    finally:
        emu.reset_state()


# --------------------------------------------------------------------------- 2, 3. hosts


@pytest.mark.parametrize("style", ["echo", "guid", "domain", "backend_host"])
@pytest.mark.parametrize("redirect", [True, False])
@pytest.mark.parametrize("tenant_form", ["guid", "domain"])
def test_every_next_link_form_and_redirect_reads_the_same_tenant(
    emu: Emulator, style: str, redirect: bool, tenant_form: str
) -> None:
    baseline = _snapshot_key(connect(emu.connection_env(app="reader")))
    emu.set_faults(next_link_style=style, redirect_to_backend=redirect)
    env = emu.connection_env(app="reader")
    if tenant_form == "domain":
        env["AZURE_TENANT_ID"] = emu.tenant_domain
    emu.reset_stats()
    tenant = connect(env)
    assert _snapshot_key(tenant) == baseline
    stats = emu.stats()
    assert stats["requests"].get("-", {}).get("307", 0) == (1 if redirect else 0)
    assert tenant.client.stats.redirects == (1 if redirect else 0)


def test_a_redirect_or_next_link_outside_the_trusted_hosts_is_refused(emu: Emulator) -> None:
    env = emu.connection_env(app="reader")
    env.pop("AUTHPOLICY_TRUSTED_HOSTS")  # an old .env without the emulator's backend host
    tenant = connect(env)
    with pytest.raises(ExoProtocolError) as err:
        tenant.read_snapshot(SnapshotNeeds())
    port = emu.endpoint.rsplit(":", 1)[1]
    assert str(err.value) == (
        f"refusing to follow a 307 redirect to https://localhost:{port}: that host is not one "
        "this cloud's Exchange service uses (nor in AUTHPOLICY_TRUSTED_HOSTS); the token is "
        "never sent elsewhere"
    )
    emu.set_faults(redirect_to_backend=False)
    tenant = connect(env)
    with pytest.raises(ExoProtocolError) as err:  # the nextLink on the backend host
        tenant.read_snapshot(SnapshotNeeds())
    assert str(err.value).startswith(
        f"refusing to follow @odata.nextLink to https://localhost:{port}: that host is not one"
    )


def test_a_trusted_host_naming_another_tenant_is_refused(emu: Emulator) -> None:
    client = connect(emu.connection_env(app="reader")).client
    other = client.base.rsplit("/", 1)[0] + "/fabrikam.onmicrosoft.com/InvokeCommand?$skiptoken=x"
    with pytest.raises(ExoProtocolError) as err:
        client.check_next_link(other)
    assert "it is not this tenant's admin API" in str(err.value)
    assert client.check_next_link(client.invoke_url) == client.invoke_url


# --------------------------------------------------------------------------- 4. $batch tokens


@pytest.mark.parametrize("mode", ["required", "ignored"])
def test_batch_members_carry_their_own_token(emu: Emulator, mode: str) -> None:
    emu.set_faults(batch_member_auth=mode)
    tenant = connect(emu.connection_env(app="reader"))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    guids = [tenant._exchange_guids[u.id] for u in snapshot.users[:10]]
    outcomes = tenant.client.batch(
        [BatchItem("Get-User", {"Identity": g}, ["Guid"]) for g in guids]
    )
    assert [o.ok for o in outcomes] == [True] * 10
    assert [str(o.value[0]["Guid"]).lower() for o in outcomes if o.value] == guids


def test_a_member_refusing_its_token_is_sent_again_alone(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    guid = tenant._exchange_guids[snapshot.users[0].id]
    # Tokens die 1.5 s after issue: the $batch goes with a fresh one (after one 401 and a
    # refresh), its member still carries the token fetched before, which is refused alone.
    tenant.client.tokens.get()
    emu.set_faults(token_early_expiry_seconds=1.5)
    time.sleep(1.6)
    outcomes = tenant.client.batch([BatchItem("Get-User", {"Identity": guid}, ["Guid"])])
    assert outcomes[0].ok, outcomes[0].error
    assert str(outcomes[0].value[0]["Guid"]).lower() == guid  # type: ignore[index]


# --------------------------------------------------------------------------- 5. references


def test_every_reference_form_reads_as_the_same_names(emu: Emulator) -> None:
    keys = []
    for form in ("name", "dn", "guid", "object", "rotate"):
        emu.set_faults(policy_reference_format=form)
        keys.append(_snapshot_key(connect(emu.connection_env(app="reader"))))
    assert all(key == keys[0] for key in keys)
    assert keys[0][0] == "Block Basic Auth"
    assert {policy for _, policy, _ in keys[0][1]} >= {"Block Basic Auth", "SMTP relay devices"}


@pytest.mark.parametrize("form", ["name", "dn", "guid", "object"])
def test_verification_reads_map_every_form_to_the_name(emu: Emulator, form: str) -> None:
    tenant = connect(emu.connection_env(app="reader"))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    emu.set_faults(policy_reference_format=form)
    users = [u for u in snapshot.users if u.policy][:12]
    assert tenant.read_users([u.id for u in users]) == {u.id: u.policy for u in users}


def test_one_reading_of_a_reference() -> None:
    from reconciler.model import TenantPolicy

    policy = TenantPolicy("Block", frozenset(), "6f1c", "CN=Block,CN=Auth")
    keys = policy_keys([policy])
    for value in ("block", "6F1C", "cn=block,cn=auth", {"Name": "Block"}, {"ObjectGuid": "6f1c"}):
        assert policy_name_from_reference(value, keys) == "Block"
    assert policy_name_from_reference("dead-guid", keys) == "dead-guid"  # never guessed
    assert policy_name_from_reference({"Name": ""}, keys) is None
    assert policy_name_from_reference("  ", keys) is None


# --------------------------------------------------------------------------- 6. cursors


@pytest.mark.parametrize("affinity", ["strict", "lenient"])
@pytest.mark.parametrize("fault", ["truncated_json", "non_json", "missing_value"])
def test_a_page_read_again_restarts_the_read_when_cursors_do_not_replay(
    emu: Emulator, affinity: str, fault: str
) -> None:
    baseline = _snapshot_key(connect(emu.connection_env(app="reader")))
    emu.set_faults(cursor_affinity=affinity)
    tenant = connect(emu.connection_env(app="reader"))
    tenant.facts()
    emu.set_faults(one_shot=[fault])
    # the first page of Get-User carries the fault only if earlier reads had no nextLink:
    # Get-AuthenticationPolicy and Get-OrganizationConfig have one page each.
    assert _snapshot_key(tenant) == baseline
    assert emu.stats()["faults_injected"] == {fault: 1}


def test_a_read_left_half_way_does_not_disturb_the_next(emu: Emulator) -> None:
    client = connect(emu.connection_env(app="reader")).client
    pages = client.iter_pages("Get-User", {"ResultSize": "Unlimited"}, select=["Guid"])
    next(pages)
    rows = client.invoke("Get-User", {"ResultSize": "Unlimited"}, select=["Guid"])
    assert len(rows) == USERS == len(unique_rows(rows))
    assert client.stats.read_restarts == 0


def test_unique_rows_keeps_the_first_of_each_object() -> None:
    rows = [{"Guid": "A"}, {"Guid": "a"}, {"ExternalDirectoryObjectId": "x"}, {"Name": "n"}]
    assert unique_rows(rows) == [{"Guid": "A"}, {"ExternalDirectoryObjectId": "x"}, {"Name": "n"}]


# --------------------------------------------------------------------------- 7. refusals


def test_a_refused_recipient_fails_alone(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="writer"))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    mail_user = next(u for u in snapshot.users if u.recipient_type == "MailUser")
    mailboxes = [u for u in snapshot.users if u.recipient_type == "UserMailbox"][:3]
    writes = [UserWrite(u.id, "SMTP relay devices") for u in [*mailboxes, mail_user]]
    results = tenant.set_user_policies(writes)
    assert [r.status for r in results] == ["applied", "applied", "applied", "failed"]
    assert results[3].message == (
        "Exchange refused Set-User (400): The authentication policy can't be set on "
        f"'{tenant._exchange_guids[mail_user.id]}' because its recipient type is MailUser."
    )
    assert [e["target"] for e in emu.write_log()] == [u.upn for u in mailboxes]


# --------------------------------------------------------------------------- 8. clouds


@pytest.fixture(scope="module")
def gcc_high(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator) -> Any:
    directory = tmp_path_factory.mktemp("gcc")
    settings = EmulatorSettings(users=50, seed=3, state_dir=directory, save_on_exit=False)
    with Emulator(dataclasses.replace(settings, cloud="gcc-high")) as emu:
        yield emu


def test_a_gcc_high_tenant_end_to_end(gcc_high: Emulator) -> None:
    env = gcc_high.connection_env(app="reader")
    assert env["AUTHPOLICY_CLOUD"] == "gcc-high"
    tenant = connect(env)
    assert len(tenant.read_snapshot(SnapshotNeeds()).users) == 50
    assert tenant.client.tokens.claims()["aud"] == "https://outlook.office365.us"


def test_wrong_cloud_expired_and_missing_role_are_three_different_lines(
    gcc_high: Emulator, emu: Emulator
) -> None:
    env = {**gcc_high.connection_env(app="reader"), "AUTHPOLICY_CLOUD": "commercial"}
    with pytest.raises(AuthenticationError) as wrong:
        connect(env).read_snapshot(SnapshotNeeds(users=False))
    assert str(wrong.value) == (
        "Entra ID refused the token request (AADSTS500011): the Exchange resource "
        f"(https://outlook.office365.com/.default) is not available in tenant "
        f"{gcc_high.tenant_id}; check AUTHPOLICY_CLOUD (the tenant may be in another cloud)"
    )
    # A token of another cloud's Exchange reaching this API (e.g. a --scope typo).
    tenant = connect(emu.connection_env(app="reader"))
    foreign = emu.issue_access_token("reader", resource="https://outlook.office365.us")
    tenant.client.tokens.get = lambda: foreign  # type: ignore[method-assign]
    tenant.client.tokens.claims = lambda: {"aud": "https://outlook.office365.us"}  # type: ignore[method-assign]
    with pytest.raises(ExoPermissionError) as cloud:
        tenant.read_snapshot(SnapshotNeeds(users=False))
    assert str(cloud.value) == (
        "Exchange refused the token (401): it was issued for https://outlook.office365.us, not "
        "https://outlook.office365.com; the token is for another cloud's Exchange: check "
        "AUTHPOLICY_CLOUD (now commercial) and --scope"
    )
    emu.set_faults(token_early_expiry_seconds=0.0)
    with pytest.raises(ExoPermissionError) as expired:
        connect(emu.connection_env(app="reader")).read_snapshot(SnapshotNeeds(users=False))
    assert str(expired.value).startswith(
        "Exchange refused the token as expired (401) although a new one was just fetched"
    )
    emu.set_faults(token_early_expiry_seconds=None)
    with pytest.raises(ExoPermissionError) as role:
        connect(emu.connection_env(app="no_permission")).read_snapshot(SnapshotNeeds(users=False))
    assert "it carries no Exchange.ManageAsApp role" in str(role.value)
    assert len({str(wrong.value), str(cloud.value), str(expired.value), str(role.value)}) == 4


# --------------------------------------------------------------------------- 9. refusals by class


def test_a_403_naming_a_per_object_class_is_not_a_missing_role() -> None:
    import json

    from reconciler.tenant.exo.errors import classify_error

    body = json.dumps(
        {
            "error": {
                "code": "Forbidden",
                "message": "Error executing cmdlet",
                "details": [
                    {
                        "message": "Ex1|Microsoft.Exchange.Configuration.Tasks."
                        "TaskInvalidOperationException|The object is outside your write scope."
                    }
                ],
            }
        }
    ).encode()
    error = classify_error(403, body, cmdlet="Set-User", is_write=True)
    assert not isinstance(error, ExoPermissionError)
    assert str(error) == "Exchange refused Set-User (403): The object is outside your write scope."
    denied = classify_error(403, b"\x00" * 64, cmdlet="Set-User", is_write=True)
    assert isinstance(denied, ExoPermissionError)


def test_the_clients_cloud_table_agrees_with_the_emulators_clouds() -> None:
    from reconciler.emulator.settings import CLOUD_AUDIENCES, CLOUD_GRAPH
    from reconciler.tenant.exo.settings import CLOUDS

    assert set(CLOUDS) == set(CLOUD_AUDIENCES) == set(CLOUD_GRAPH)
    for name, cloud in CLOUDS.items():
        resource = cloud.scope.removesuffix("/.default")
        assert resource == CLOUD_AUDIENCES[name][0], name  # the audience the API accepts
        assert resource == cloud.exchange_host, name
        assert resource.removeprefix("https://") in cloud.exchange_hosts, name
        assert cloud.graph_host == CLOUD_GRAPH[name], name
    assert CLOUDS["commercial"].authority_host == "https://login.microsoftonline.com"
    assert CLOUDS["gcc-high"].authority_host == "https://login.microsoftonline.us"
    assert CLOUDS["china"].authority_host == "https://login.chinacloudapi.cn"


def test_a_next_link_naming_the_initial_domain_is_recognised_before_the_org_is_read(
    emu: Emulator,
) -> None:
    # AZURE_TENANT_ID is the GUID; the very first paged read gets domain-form nextLinks.
    emu.set_faults(next_link_style="domain")
    client = connect(emu.connection_env(app="reader")).client
    rows = client.invoke("Get-User", {"ResultSize": "Unlimited"}, select=["Guid"])
    assert len(rows) == USERS
    assert emu.tenant_domain in client._tenant_segments


def test_a_dangling_reference_costs_one_policy_read_not_one_per_user(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="writer"))
    snapshot = tenant.read_snapshot(SnapshotNeeds())
    holders = [u for u in snapshot.users if u.policy == "SMTP relay devices"]
    assert len(holders) >= 3
    emu.set_faults(remove_referenced="orphan", policy_reference_format="guid")
    try:
        tenant.remove_policy("SMTP relay devices")
        emu.reset_stats()
        found = tenant.read_users([u.id for u in holders])
        # The deleted policy's GUID, as it came: never guessed into a name.
        assert len({found[u.id] for u in holders}) == 1
        assert found[holders[0].id] not in (None, "SMTP relay devices")
        assert emu.stats()["requests"].get("Get-AuthenticationPolicy", {}) == {"200": 1}
    finally:
        emu.reset_state()
