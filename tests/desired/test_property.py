"""Property: whatever the file holds, the loader returns a DesiredState or a ConfigError whose
problems are well-formed single lines pointing into the file. Never any other exception."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.desired import validate_text
from reconciler.errors import ConfigError
from reconciler.model import MATCH_KEYS, PROTOCOL_NAMES, DesiredState

BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
LINE = re.compile(r"^p\.yaml:(\d+):(\d+): [^\n]+: [^\n]+$")

ROOT = Path(__file__).resolve().parents[2]
VALID = (ROOT / "policies.yaml").read_text()

KNOWN_WORDS = [
    "version", "tenant", "policies", "allow", "remove_policies", "prune_policies",
    "default_policy", "assignments", "unmatched", "revoke_sessions", "rules", "name", "policy",
    "match", "except", "safety", "max_user_changes", "max_policy_deletes", "all", "ignore",
    "clear", "10%", "150%", "-1", "Block Basic Auth", "P", "a@contoso.com", "UserMailbox",
    *PROTOCOL_NAMES, *MATCH_KEYS,
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(KNOWN_WORDS),
    st.text(max_size=70),
)
keys = st.one_of(st.sampled_from(KNOWN_WORDS), st.text(max_size=70))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=40,
)
# Documents shaped like policies.yaml, so the checks past the schema run too.
shaped = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, 2, "1", None])},
    optional={
        "policies": st.dictionaries(
            st.text(max_size=70),
            st.fixed_dictionaries(
                {"allow": st.lists(st.sampled_from([*PROTOCOL_NAMES, "smpt"]), max_size=4)}
            ),
            max_size=4,
        ),
        "remove_policies": st.lists(st.sampled_from(["P", "p", "Old", ""]), max_size=3),
        "default_policy": st.one_of(st.none(), st.sampled_from(["P", "Old", "Q"])),
        "assignments": st.fixed_dictionaries(
            {},
            optional={
                "unmatched": st.sampled_from(["ignore", "clear", "clean"]),
                "rules": st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["a", "A", "b", ""])},
                        optional={
                            "policy": st.one_of(st.none(), st.sampled_from(["P", "Old", "Q"])),
                            "match": st.one_of(
                                st.just("all"),
                                st.dictionaries(
                                    st.sampled_from([*MATCH_KEYS, "upns"]),
                                    st.lists(
                                        st.sampled_from(["a@c.com", "x", "UserMailbox"]), max_size=2
                                    ),
                                    max_size=3,
                                ),
                            ),
                            "except": st.dictionaries(
                                st.sampled_from(MATCH_KEYS),
                                st.lists(st.just("x@c.com"), max_size=1),
                            ),
                        },
                    ),
                    max_size=4,
                ),
            },
        ),
        "safety": st.dictionaries(
            st.sampled_from(["max_user_changes", "max_policy_deletes"]),
            st.one_of(st.integers(-5, 200), st.sampled_from(["10%", "150%", "-1%", "x", None])),
        ),
    },
)


def check_outcome(text: str | bytes) -> None:
    """The property itself: a model, or only well-formed one-line problems inside the file."""
    try:
        state = validate_text(text, "p.yaml")
    except ConfigError as error:
        assert error.problems
        decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        # YAML (like most editors) also breaks lines at a lone CR, NEL, LS and PS.
        lines = len(BREAKS.findall(decoded)) + 1
        for problem in error.problems:
            match = LINE.match(problem)
            assert match, problem
            assert 1 <= int(match.group(1)) <= lines, problem
    else:
        assert isinstance(state, DesiredState)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_random_documents_never_raise(data: object) -> None:
    check_outcome(yaml.safe_dump(data, allow_unicode=True))


@settings(max_examples=150, deadline=None)
@given(shaped)
def test_random_policy_shaped_documents_never_raise(data: object) -> None:
    check_outcome(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises(text: str) -> None:
    check_outcome(text)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    check_outcome(data)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutations_of_the_real_file_never_raise(data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 12))
        insert = data.draw(st.text(alphabet=" \t\n:-[]{}#&*!|>'\",%@?abc012", max_size=6))
        text = text[:at] + insert + text[at + cut :]
    check_outcome(text)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=documents)
def test_the_validate_verb_exits_0_or_1_with_messages(
    data: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code = main(["validate", "-c", str(path)])
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err
    if code == 0:
        assert out.startswith(f"{path}: OK (")
    else:
        assert code == 1
        assert err.strip()
        assert all(line.startswith(f"{path}:") for line in err.splitlines())
