"""Small pieces of the baseline and findings code, without a tenant: Conditional Access
policies read from Graph's JSON, who they cover, SARIF artifact URIs and fingerprints, and
JUnit XML that stays well-formed whatever a tenant names things."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped

from reconciler.findings.junit import Case, Suite, render_junit
from reconciler.findings.sarif import artifact_uri, fingerprint
from reconciler.tenant.graph import ca_policy

BLOCK = {
    "id": "p1",
    "displayName": "Block legacy authentication",
    "state": "enabled",
    "conditions": {
        "clientAppTypes": ["exchangeActiveSync", "other"],
        "applications": {"includeApplications": ["All"]},
        "users": {"includeUsers": ["All"], "excludeUsers": ["AAAA-1"], "excludeGroups": []},
    },
    "grantControls": {"operator": "OR", "builtInControls": ["block"]},
}


def test_a_legacy_block_is_recognised_and_covers_all_but_its_exclusions() -> None:
    policy = ca_policy(BLOCK)
    assert policy is not None
    assert policy.blocks_legacy and policy.blocks_smtp_auth
    assert policy.covers("aaaa-1") == "no"  # ids compare case-insensitively
    assert policy.covers("bbbb-2") == "yes"


@pytest.mark.parametrize(
    ("change", "legacy", "smtp"),
    [
        ({"state": "enabledForReportingButNotEnforced"}, False, False),
        ({"state": "disabled"}, False, False),
        ({"grantControls": {"builtInControls": ["mfa"]}}, False, False),
        ({"conditions": {**BLOCK["conditions"], "clientAppTypes": ["other"]}}, False, True),
        ({"conditions": {**BLOCK["conditions"], "clientAppTypes": ["all"]}}, True, True),
        (
            {
                "conditions": {
                    **BLOCK["conditions"],
                    "applications": {"includeApplications": ["some-other-app"]},
                }
            },
            False,
            False,
        ),
    ],
)
def test_what_is_not_a_legacy_block(change: dict, legacy: bool, smtp: bool) -> None:
    policy = ca_policy({**BLOCK, **change})
    assert policy is not None
    assert (policy.blocks_legacy, policy.blocks_smtp_auth) == (legacy, smtp)


def test_group_scoped_policies_may_cover_a_user_and_junk_is_skipped() -> None:
    scoped = ca_policy(
        {
            **BLOCK,
            "conditions": {
                **BLOCK["conditions"],
                "users": {"includeGroups": ["G1"], "excludeUsers": []},
            },
        }
    )
    assert scoped is not None and scoped.covers("anyone") == "maybe"
    excluded_group = ca_policy(
        {
            **BLOCK,
            "conditions": {
                **BLOCK["conditions"],
                "users": {"includeUsers": ["All"], "excludeGroups": ["G2"]},
            },
        }
    )
    assert excluded_group is not None and excluded_group.covers("anyone") == "maybe"
    assert ca_policy("not a policy") is None
    odd = ca_policy({"id": "x", "conditions": "nonsense", "grantControls": None})
    assert odd is not None and not odd.blocks_legacy


def test_artifact_uris_are_repository_relative_and_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert artifact_uri("policies.yaml") == "policies.yaml"
    assert artifact_uri("./config/policies.yaml") == "config/policies.yaml"
    assert artifact_uri(str(tmp_path / "my dir" / "p.yaml")) == "my%20dir/p.yaml"
    assert artifact_uri("/elsewhere/p.yaml").startswith("file:///")


def test_fingerprints_ignore_case_of_the_tenant_and_separate_groups() -> None:
    assert fingerprint("Contoso", "AP.3", "policy:x") == fingerprint("contoso", "AP.3", "policy:x")
    assert fingerprint("contoso", "AP.3", "policy:x") != fingerprint("contoso", "AP.3", "policy:y")
    assert fingerprint("contoso", "AP.3", "a\x1fb") != fingerprint("contoso", "AP.3a", "b")


def test_junit_is_well_formed_with_control_characters_and_parses_back() -> None:
    nasty = "policy \x1b[31mred\x07 <b>&amp;"
    text = render_junit(
        [
            Suite(
                "authpolicy baseline: t",
                (
                    Case("AP.3: x", "authpolicy.baseline.t", "fail", nasty, nasty),
                    Case("AP.4: y", "authpolicy.baseline.t", "skipped", "no file"),
                    Case("AP.1: z", "authpolicy.baseline.t", "pass"),
                ),
            )
        ]
    )
    ET.fromstring(text.split("?>", 1)[1])  # well-formed XML
    (suite,) = JUnitXml.fromstring(text)
    assert (suite.tests, suite.failures, suite.skipped) == (3, 1, 1)
    results = {case.name: case.result for case in suite}
    failure = results["AP.3: x"][0]
    assert (
        isinstance(failure, Failure)
        and "\\x1b" in failure.message
        and "<b>&amp;" in failure.message
    )
    assert isinstance(results["AP.4: y"][0], Skipped)
    assert results["AP.1: z"] == []
