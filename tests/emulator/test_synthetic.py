"""The synthetic Contoso tenant: deterministic, and shaped like the demo story."""

from __future__ import annotations

import json
from collections import Counter

from reconciler.emulator.state import TenantState, policy_dn
from reconciler.emulator.synthetic import generate_tenant


def _dump(users: int, seed: int) -> str:
    return json.dumps(generate_tenant(users, seed), sort_keys=True)


def test_same_input_byte_identical() -> None:
    assert _dump(700, 5) == _dump(700, 5)


def test_different_seed_differs() -> None:
    assert _dump(300, 5) != _dump(300, 6)


def test_tenant_story() -> None:
    data = generate_tenant(2000, 7)
    state = TenantState(data)
    policies = {p["Name"]: p for p in data["policies"]}
    assert set(policies) == {"Block Basic Auth", "SMTP relay devices", "Legacy 2018 Policy"}
    block = policies["Block Basic Auth"]
    allowed = {k for k, v in block.items() if k.startswith("AllowBasicAuth") and v}
    assert allowed == {"AllowBasicAuthImap", "AllowBasicAuthSmtp"}  # the admin-center drift
    assert data["organization"]["DefaultAuthenticationPolicy"] == block["Guid"]
    users = data["users"]
    assert len(users) == 2000
    holders = Counter(state.policy_name_of(u["_policy"]) for u in users)
    assert holders["Legacy 2018 Policy"] == 0
    refused = ("MailUser", "GuestMailUser")  # Exchange refuses them a direct policy
    assert all(u["_policy"] is None for u in users if u["RecipientTypeDetails"] in refused)
    others = [u for u in users if u["RecipientTypeDetails"] not in refused]
    no_direct = sum(u["_policy"] is None for u in others)
    assert 0.04 * 2000 <= no_direct <= 0.06 * 2000  # the newest ~5% rely on the default
    assert holders["Block Basic Auth"] > 0.8 * 2000
    newest = [u for u in users[-50:] if u["RecipientTypeDetails"] not in refused]
    assert sum(u["_policy"] is None for u in newest) > 0.8 * len(newest)
    breakglass = state.find_user("breakglass@contoso.com", allow_external_id=False)
    assert breakglass is not None and breakglass["_policy"] == block["Guid"]
    scanners = [u for u in users if u["UserPrincipalName"].startswith("scanner-")]
    assert len(scanners) == 8
    assert all(u["UserPrincipalName"].endswith("@contoso.com") for u in scanners)
    on_relay = [u for u in scanners if state.policy_name_of(u["_policy"]) == "SMTP relay devices"]
    assert len(on_relay) == len(scanners) - 2  # two scanners drifted
    assert all(u["_smtp_disabled"] is False for u in scanners)
    types = Counter(u["RecipientTypeDetails"] for u in users)
    assert 0.70 < types["UserMailbox"] / 2000 < 0.82
    for kind in (
        "SharedMailbox",
        "RoomMailbox",
        "EquipmentMailbox",
        "MailUser",
        "User",
        "GuestMailUser",
    ):
        assert types[kind] > 0, kind
    assert len({u["Department"] for u in users}) >= 8
    assert len({u["Company"] for u in users}) >= 3
    assert len({u["CountryOrRegion"] for u in users}) >= 5
    assert len({u["Name"].lower() for u in users}) == 2000


def test_groups_nesting_and_cycle() -> None:
    state = TenantState(generate_tenant(500, 2))
    exceptions = state.find_group("SMTP Exceptions")
    lob = state.find_group("Line-of-business apps")
    assert exceptions is not None and lob is not None
    assert lob["Guid"] in exceptions["members"]
    team, approvers = state.find_group("Finance Team"), state.find_group("Finance Approvers")
    assert team is not None and approvers is not None
    assert approvers["Guid"] in team["members"] and team["Guid"] in approvers["members"]
    assert state.find_group("Project Phoenix")["RecipientTypeDetails"] == "GroupMailbox"


def test_policy_dn_escapes_commas() -> None:
    assert policy_dn("A, B", "contoso.onmicrosoft.com").startswith("CN=A\\, B,CN=Auth Policies,")


def test_tiny_tenants() -> None:
    assert generate_tenant(0, 1)["users"] == []
    one = generate_tenant(1, 1)["users"]
    assert [u["Name"] for u in one] == ["breakglass"]
    assert len(generate_tenant(3, 1)["users"]) == 3


def test_fast_date_matches_datetime_formatting() -> None:
    import datetime as dt

    from reconciler.emulator.synthetic import TENANT_EPOCH, _date
    from reconciler.emulator.wire import format_date

    for minutes in (-216000.0, -0.5, 0, 59.99999999, 60 + 3679200 * 7 / 3, 1e6 + 1 / 3):
        assert _date(minutes) == format_date(TENANT_EPOCH + dt.timedelta(minutes=minutes))
