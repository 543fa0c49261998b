"""schema/policies.schema.json: a valid draft 2020-12 schema that agrees with the code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

from reconciler.desired import limits
from reconciler.desired.schema import load_schema
from reconciler.desired.semantics import RECIPIENT_TYPES
from reconciler.model import MATCH_KEYS, PROTOCOL_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_root_schema_path_is_the_packaged_file() -> None:
    root = ROOT / "schema" / "policies.schema.json"
    packaged = ROOT / "reconciler" / "schema" / "policies.schema.json"
    assert root.resolve() == packaged.resolve()
    assert json.loads(root.read_text()) == load_schema()


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _properties(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{where}.{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _properties(sub, f"{where}[{index}]")


def test_every_property_has_a_description() -> None:
    found = list(_properties(load_schema()))
    assert len(found) > 25
    assert [where for where, sub in found if not sub.get("description")] == []


def test_schema_lists_agree_with_the_model() -> None:
    defs = load_schema()["$defs"]
    assert defs["policy"]["properties"]["allow"]["items"]["enum"] == list(PROTOCOL_NAMES)
    assert tuple(defs["match"]["properties"]) == MATCH_KEYS
    described = defs["match"]["properties"]["recipient_type"]["items"]["description"]
    assert all(name in described for name in RECIPIENT_TYPES)


def test_schema_limits_agree_with_the_reader() -> None:
    schema = load_schema()
    props = schema["properties"]
    assert props["policies"]["maxProperties"] == limits.MAX_POLICIES
    assert props["remove_policies"]["maxItems"] == limits.MAX_REMOVE_POLICIES
    assert props["assignments"]["properties"]["rules"]["maxItems"] == limits.MAX_RULES
    assert schema["$defs"]["policyName"]["maxLength"] == limits.MAX_POLICY_NAME
    assert schema["$defs"]["rule"]["properties"]["name"]["maxLength"] == limits.MAX_RULE_NAME
    for key in MATCH_KEYS:
        match_list = schema["$defs"]["match"]["properties"][key]
        assert match_list["maxItems"] == limits.MAX_LIST_ITEMS
        assert match_list["items"]["maxLength"] == limits.MAX_STRING


def test_root_policies_yaml_names_the_schema_for_editors() -> None:
    first_line = (ROOT / "policies.yaml").read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=schema/policies.schema.json"
