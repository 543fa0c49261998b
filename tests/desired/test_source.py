# ruff: noqa: E501  (expected messages are kept whole so they read as the user sees them)
"""The YAML reader: positions, and hostile input refused quickly with bounded memory."""

from __future__ import annotations

import tracemalloc

import pytest

from reconciler.desired import limits, validate_text
from reconciler.desired.source import FileProblem, decode, parse
from reconciler.errors import ConfigError


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_text(text, "p.yaml")
    return caught.value.problems


def test_positions_of_values_and_keys() -> None:
    doc = parse("a: 1\nb:\n  - x\n  - {c: d}\n")
    assert doc.data == {"a": 1, "b": ["x", {"c": "d"}]}
    assert doc.values[("a",)] == (1, 4)
    assert doc.values[("b", 0)] == (3, 5)
    assert doc.values[("b", 1, "c")] == (4, 9)
    assert doc.keys[("b", 1, "c")] == (4, 6)
    assert doc.position(("b", 1, "missing")) == (4, 5)  # nearest written ancestor


def test_scalars_resolve_like_yaml_1_2() -> None:
    doc = parse("[true, False, yes, no, on, ~, null, '', 12, -3, 1.5, 1e3, 0x1F, 2024-01-01, '7']")
    assert doc.data == [
        True,
        False,
        "yes",
        "no",
        "on",
        None,
        None,
        "",
        12,
        -3,
        1.5,
        1000.0,
        "0x1F",
        "2024-01-01",
        "7",
    ]


def test_explicit_standard_tags_are_honoured() -> None:
    assert parse("[!!str 12, !!int '7', !!bool true]").data == ["12", 7, True]


def test_a_bad_explicit_int_is_one_problem() -> None:
    assert problems("version: !!int seven\n") == [
        "p.yaml:1:10: version: 'seven' is not a valid !!int"
    ]


def test_billion_laughs_is_refused_at_the_first_alias_with_little_memory() -> None:
    lines = ["version: 1", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    tracemalloc.start()
    try:
        found = problems("\n".join(lines) + "\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == [
        "p.yaml:3:10: a1[0]: YAML aliases (*a0) are not supported; write the value out"
    ]
    assert peak < 5_000_000  # bytes: nothing was expanded


def test_an_anchor_without_alias_is_harmless() -> None:
    assert validate_text("version: &v 1\n").version == 1


def test_deep_flow_nesting_is_refused() -> None:
    found = problems("[" * 100_000 + "]" * 100_000)
    assert found == [
        f"p.yaml:1:{limits.MAX_DEPTH + 1}: (document): nested more than 32 levels deep"
    ]


def test_deep_block_nesting_is_refused() -> None:
    text = "".join("  " * depth + f"k{depth}:\n" for depth in range(40)) + "  " * 40 + "v\n"
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith("p.yaml:34:67: k0.k1.k2.")
    assert found[0].endswith(": nested more than 32 levels deep")


def test_100000_rules_are_refused_at_the_rule_limit() -> None:
    # Compact flow rules so the file stays under the size limit and the rule limit is what trips.
    text = (
        "version: 1\nassignments:\n  rules: [\n"
        + "".join(f"    {{name: r{i}, policy: null, match: all}},\n" for i in range(100_000))
        + "  ]\n"
    )
    assert len(text) < limits.MAX_FILE_BYTES
    assert problems(text) == [
        "p.yaml:1004:5: assignments.rules: more than 1,000 rules; that is the limit "
        "(see docs/configuration.md, Limits)"
    ]


def test_1000_rules_are_accepted() -> None:
    text = "version: 1\nassignments:\n  rules:\n" + "".join(
        f"    - {{name: r{i}, policy: null, match: {{users: [u{i}@c.com]}}}}\n" for i in range(1000)
    )
    assert len(validate_text(text).assignments.rules) == 1000


def test_too_many_policies() -> None:
    text = "version: 1\npolicies:\n" + "".join(f"  p{i}: {{allow: []}}\n" for i in range(501))
    assert problems(text) == [
        "p.yaml:503:3: policies: more than 500 policies; that is the limit "
        "(see docs/configuration.md, Limits)"
    ]


def test_too_many_values_in_one_list() -> None:
    text = "version: 1\nx: [" + ",".join(["1"] * 10_001) + "]\n"
    assert problems(text) == [
        "p.yaml:2:20005: x: more than 10,000 entries; that is the limit "
        "(see docs/configuration.md, Limits)"
    ]


def test_too_many_values_in_the_file() -> None:
    lists = "".join(f"k{i}: [" + ",".join(["1"] * 9_999) + "]\n" for i in range(11))
    found = problems("version: 1\n" + lists)
    assert len(found) == 1
    assert found[0].endswith(
        "the file has more than 100,000 values; that is the limit (see docs/configuration.md, Limits)"
    )


def test_decode_refuses_utf16_and_strips_the_bom() -> None:
    assert decode(b"\xef\xbb\xbfversion: 1\n") == "version: 1\n"
    with pytest.raises(FileProblem):
        decode("version: 1\n".encode("utf-16"))


def test_invalid_utf8_position_counts_characters_not_bytes() -> None:
    assert problems(b"version: 1\n# \xc3\xa9 \xc3\xa9\xff\n") == [
        "p.yaml:2:6: (document): not valid UTF-8 (byte 0xff); policies.yaml must be a UTF-8 text file"
    ]


def test_a_tab_in_a_large_file_is_named_even_with_libyaml_wording() -> None:
    # Over 256 KiB the portable re-parse is skipped; the tab must still be recognised.
    padding = "# padding\n" * 30_000
    assert problems("version: 1\n" + padding + "policies:\n\tB: {allow: []}\n") == [
        "p.yaml:30003:1: (document): a tab is used for indentation; YAML allows only spaces there"
    ]
