"""export: snapshot -> policies.yaml. Parsed back, it must declare exactly the tenant."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from reconciler import export as export_module
from reconciler.export import export_policies_yaml, expressible, yaml_scalar
from reconciler.model import PROTOCOL_NAMES, TenantPolicy, TenantSnapshot
from tests.export.tenants import HOSTILE_NAMES, SCENARIOS, contoso_like, dangling, user


def _rules_by_policy(doc: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rule in doc["assignments"]["rules"]:
        out.setdefault(rule["policy"], []).extend(rule["match"]["users"])
    return out


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_document_declares_every_policy_default_and_direct_holder(scenario: str) -> None:
    snapshot: TenantSnapshot = SCENARIOS[scenario]()
    doc = yaml.safe_load(export_policies_yaml(snapshot).text)

    assert doc["version"] == 1
    assert doc["tenant"] == snapshot.tenant
    assert {name: spec["allow"] for name, spec in (doc["policies"] or {}).items()} == {
        p.name: [n for n in PROTOCOL_NAMES if n in p.allow]
        for p in snapshot.policies
        if expressible("policy", p.name)
    }
    default = snapshot.policy(snapshot.default_policy)
    if snapshot.default_policy is None:
        assert doc["default_policy"] is None
    elif default is not None and expressible("policy", default.name):
        assert doc["default_policy"] == default.name
    else:  # dangling or undeclarable: left out, i.e. "leave the default as it is"
        assert "default_policy" not in doc
    assert doc["assignments"]["unmatched"] == "ignore"
    assert doc["assignments"]["revoke_sessions"] is False
    expected: dict[str, list[str]] = {}
    for u in snapshot.users:
        held = snapshot.policy(u.policy)
        if held is not None and expressible("upn", u.upn) and expressible("policy", held.name):
            expected.setdefault(held.name, []).append(u.upn)
    assert _rules_by_policy(doc) == {k: sorted(v, key=str.casefold) for k, v in expected.items()}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_output_is_deterministic_whatever_the_read_order(scenario: str) -> None:
    snapshot = SCENARIOS[scenario]()
    shuffled = dataclasses.replace(
        snapshot,
        policies=tuple(reversed(snapshot.policies)),
        users=tuple(reversed(snapshot.users)),
    )
    assert export_policies_yaml(snapshot).text == export_policies_yaml(shuffled).text


def test_comments_say_what_was_found() -> None:
    result = export_policies_yaml(contoso_like(60))
    text = result.text
    assert "# Found: 3 policies, 61 users." in text
    assert "#   55 users hold a policy directly (listed in the rules below)." in text
    assert "#   6 users rely on the default (Block Basic Auth): no direct policy." in text
    assert (
        "  # held directly by 0 users; allows Basic SMTP AUTH; 3 switches on with no effect "
        "since 2022/2023\n  Legacy 2018 Policy:" in text
    )
    assert "    # 52 users hold Block Basic Auth directly\n" in text
    assert (result.policies, result.direct_users, result.default_users) == (3, 55, 6)


def test_users_holding_the_default_directly_are_listed_so_they_keep_it() -> None:
    doc = yaml.safe_load(export_policies_yaml(contoso_like(20)).text)
    assert doc["default_policy"] == "Block Basic Auth"
    assert "user0@contoso.com" in _rules_by_policy(doc)["Block Basic Auth"]
    # ...and the users relying on the default are in no rule.
    listed = {upn for upns in _rules_by_policy(doc).values() for upn in upns}
    assert "breakglass@contoso.com" not in listed
    assert "user15@contoso.com" not in listed


def test_no_default_is_declared_as_null() -> None:
    text = export_policies_yaml(SCENARIOS["no_default"]()).text
    assert "\ndefault_policy: null\n" in text
    assert "#   1 user without any policy (no direct policy and no default)" in text


def test_hostile_names_and_upns_round_trip_through_yaml() -> None:
    result = export_policies_yaml(SCENARIOS["hostile"]())
    doc = yaml.safe_load(result.text)
    # A tab is a control character the file format refuses: that policy is left undeclared.
    assert sorted(doc["policies"]) == sorted(n for n in HOSTILE_NAMES if n != "tab\there")
    assert doc["default_policy"] == "null"  # the policy named "null", not YAML null
    rules = _rules_by_policy(doc)
    assert rules["yes"] == ["o'brien+0@contoso.com"]
    assert rules["2018"] == ["o'brien+2@contoso.com"]
    assert "tab\there" not in rules
    # UPNs that are not name@domain cannot be `users:` matches: skipped, left as they are.
    assert result.skipped == (
        "id-x (UPN 'null'): the UPN cannot be written as a `users:` match; holds 'yes'; left as is",
        "id-z (UPN 'ünï@cöntoso.com'): the UPN cannot be written as a `users:` match; holds "
        "'yes'; left as is",
        "o'brien+13@contoso.com: holds the undeclared policy 'tab\\there'; left as is",
        "policy 'tab\\there': its name cannot be written in policies.yaml; not declared, its "
        "holders are left as they are",
    )


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE_NAMES,
        "line\u2028separator",
        "next\x85line",
        "cr\r\nlf",
        "\x00nul",
        " lead",
        "~",
        "<<",
    ],
)
def test_yaml_scalar_reads_back_as_the_same_string_as_value_and_as_key(value: str) -> None:
    assert yaml.safe_load(f"k: {yaml_scalar(value)}") == {"k": value}
    assert yaml.safe_load(f"{yaml_scalar(value)}: 1") == {value: 1}
    assert "\n" not in yaml_scalar(value)


def test_comments_stay_on_one_line_whatever_a_name_contains() -> None:
    snapshot = TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=(TenantPolicy("evil\nversion: 99", frozenset()),),
        default_policy=None,
        users=(user(1, "evil\nversion: 99"),),
    )
    text = export_policies_yaml(snapshot).text
    doc = yaml.safe_load(text)
    assert doc["version"] == 1
    assert doc["policies"] == {}  # a newline can't be in a policies.yaml name: undeclared
    assert "#   policy 'evil\\nversion: 99': its name cannot be written" in text


def test_dangling_links_and_users_without_upn_are_skipped_with_a_comment() -> None:
    result = export_policies_yaml(dangling())
    doc = yaml.safe_load(result.text)
    assert list(doc["policies"]) == ["Block Basic Auth"]  # never an undeclared policy
    assert _rules_by_policy(doc) == {"Block Basic Auth": ["user1@contoso.com"]}
    assert result.skipped == (
        "id-3 (UPN ''): the UPN cannot be written as a `users:` match; holds "
        "'Block Basic Auth'; left as is",
        "user2@contoso.com: holds policy 'Removed Policy', which does not exist in the tenant "
        "(dangling link); left as is",
    )
    assert (
        "#   user2@contoso.com: holds policy 'Removed Policy', which does not exist" in result.text
    )
    assert "#   2 users could not be exported (see the end of the file)." in result.text


def test_a_policy_with_more_holders_than_one_list_allows_is_split_into_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export_module.limits, "MAX_LIST_ITEMS", 20)
    doc = yaml.safe_load(export_policies_yaml(contoso_like(60)).text)
    rules = [r for r in doc["assignments"]["rules"] if r["policy"] == "Block Basic Auth"]
    assert [r["name"] for r in rules] == [
        "direct: Block Basic Auth (part 1 of 3)",
        "direct: Block Basic Auth (part 2 of 3)",
        "direct: Block Basic Auth (part 3 of 3)",
    ]
    assert [len(r["match"]["users"]) for r in rules] == [20, 20, 12]


def test_too_big_a_listing_leaves_out_the_largest_policy_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = export_policies_yaml(contoso_like(60)).text
    monkeypatch.setattr(export_module.limits, "MAX_FILE_BYTES", len(small.encode()) - 100)
    result = export_policies_yaml(contoso_like(60))
    doc = yaml.safe_load(result.text)
    assert result.unlisted == ("Block Basic Auth",)
    assert len(result.text.encode()) <= len(small.encode()) - 100
    assert _rules_by_policy(doc) == {
        "SMTP relay devices": [
            "scanner-00@contoso.com",
            "scanner-01@contoso.com",
            "scanner-02@contoso.com",
        ]
    }
    assert "#   The 52 direct holders of Block Basic Auth are NOT listed" in result.text


def test_starts_with_the_schema_hint_and_ends_with_one_newline() -> None:
    text = export_policies_yaml(contoso_like(10)).text
    assert text.startswith("# yaml-language-server: $schema=policies.schema.json\n")
    assert text.endswith("\n") and not text.endswith("\n\n")


# ------------------------------------------------------------------ round trip with the engine


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_export_then_plan_against_the_same_snapshot_has_no_changes(
    scenario: str, tmp_path: Path
) -> None:
    from reconciler.desired import load_desired_state
    from reconciler.plan import make_plan

    snapshot = SCENARIOS[scenario]()
    path = tmp_path / "policies.yaml"
    path.write_text(export_policies_yaml(snapshot).text, encoding="utf-8")
    desired = load_desired_state(str(path))
    plan = make_plan(desired, snapshot)
    assert plan.changes == ()
    assert plan.guards == ()


def test_round_trip_when_holders_are_split_over_several_rules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from reconciler.desired import load_desired_state
    from reconciler.plan import make_plan

    monkeypatch.setattr(export_module.limits, "MAX_LIST_ITEMS", 7)
    snapshot = contoso_like(40)
    path = tmp_path / "policies.yaml"
    path.write_text(export_policies_yaml(snapshot).text, encoding="utf-8")
    monkeypatch.undo()
    assert make_plan(load_desired_state(str(path)), snapshot).changes == ()


@pytest.mark.parametrize("scenario", ["undeclarable_default", "dangling_default"])
def test_a_default_the_file_cannot_declare_is_left_out_not_cleared(scenario: str) -> None:
    text = export_policies_yaml(SCENARIOS[scenario]()).text
    doc = yaml.safe_load(text)
    assert "default_policy" not in doc  # omitted = leave as is; null would clear it
    assert "so `default_policy` is left\n# out: the plan leaves the default as it is." in text
