"""Loading valid files: the model built from them, the canonical data, and file-level errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.desired import limits, load_desired_state, loader, validate_text
from reconciler.errors import ConfigError
from reconciler.model import DEFAULT_RECIPIENT_TYPES, Limit, MatchSpec, Safety, SourceLocation

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "desired"


def test_root_policies_yaml_is_designs_example() -> None:
    state = load_desired_state(ROOT / "policies.yaml")
    assert state.version == 1
    assert state.tenant == "contoso.onmicrosoft.com"
    assert [(p.name, p.allow) for p in state.policies] == [
        ("Block Basic Auth", frozenset()),
        ("SMTP relay devices", frozenset({"smtp"})),
    ]
    assert state.remove_policies == ("Legacy 2018 Policy",)
    assert state.prune_policies is False
    assert state.manage_default is True
    assert state.default_policy == "Block Basic Auth"
    assert state.assignments.unmatched == "ignore"
    assert state.assignments.revoke_sessions is True
    rules = state.assignments.rules
    assert [(r.name, r.policy) for r in rules] == [
        ("break-glass", None),
        ("devices", "SMTP relay devices"),
        ("everyone", "Block Basic Auth"),
    ]
    assert rules[0].match == MatchSpec(users=("breakglass@contoso.com",))
    assert rules[1].match == MatchSpec(
        upn=("scanner-*@contoso.com",), recipient_type=("UserMailbox", "SharedMailbox")
    )
    assert rules[2].match == MatchSpec(match_all=True)
    assert rules[2].except_ == MatchSpec(member_of=("SMTP Exceptions",))
    assert state.safety == Safety(Limit(10.0, percent=True), Limit(1.0))
    assert state.source.endswith("policies.yaml")


def test_locations_point_at_the_policy_name_and_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text((FIXTURES / "minimal.yaml").read_text() + RULES)
    state = load_desired_state(path)
    assert state.policies[0].location == SourceLocation(str(path), 4, 3)
    assert state.assignments.rules[0].location == SourceLocation(str(path), 9, 7)


RULES = """\
assignments:
  rules:
    - name: everyone
      policy: block basic auth
      match: all
"""


def test_references_take_the_declared_spelling() -> None:
    state = validate_text(
        (FIXTURES / "minimal.yaml")
        .read_text()
        .replace("default_policy: Block Basic Auth", "default_policy: BLOCK basic AUTH")
        + RULES
    )
    assert state.default_policy == "Block Basic Auth"
    assert state.assignments.rules[0].policy == "Block Basic Auth"


def test_default_policy_omitted_null_and_named() -> None:
    base = "version: 1\npolicies:\n  P:\n    allow: []\n"
    omitted = validate_text(base)
    assert (omitted.manage_default, omitted.default_policy) == (False, None)
    cleared = validate_text(base + "default_policy: null\n")
    assert (cleared.manage_default, cleared.default_policy) == (True, None)
    named = validate_text(base + "default_policy: P\n")
    assert (named.manage_default, named.default_policy) == (True, "P")


def test_defaults_when_sections_are_left_out() -> None:
    state = validate_text("version: 1\n")
    assert state.policies == ()
    assert state.remove_policies == ()
    assert state.assignments.unmatched == "ignore"
    assert state.assignments.revoke_sessions is True
    assert state.assignments.rules == ()
    assert state.safety == Safety(None, None)


def test_rule_policy_null_means_no_direct_policy() -> None:
    state = validate_text(
        "version: 1\nassignments:\n  unmatched: clear\n  revoke_sessions: false\n  rules:\n"
        "    - {name: r, policy: null, match: {users: [a@b.com]}}\n"
    )
    assert state.assignments.rules[0].policy is None
    assert state.assignments.unmatched == "clear"
    assert state.assignments.revoke_sessions is False


def test_recipient_types_compare_case_insensitively_and_take_exchanges_spelling() -> None:
    state = validate_text(
        "version: 1\nassignments:\n  rules:\n"
        "    - {name: r, policy: null, match: {recipient_type: [usermailbox, SHAREDMAILBOX]}}\n"
    )
    assert state.assignments.rules[0].match.recipient_type == ("UserMailbox", "SharedMailbox")


def test_yes_no_and_dates_stay_strings() -> None:
    # YAML 1.1 would read `NO` (Norway) as false and 2024-01-01 as a date.
    state = validate_text(
        "version: 1\nassignments:\n  rules:\n"
        "    - {name: 2024-01-01, policy: null, match: {country: [NO, yes, on]}}\n"
    )
    rule = state.assignments.rules[0]
    assert rule.name == "2024-01-01"
    assert rule.match.country == ("NO", "yes", "on")


def test_policy_names_may_hold_quotes_and_markup() -> None:
    name = """Block "all" <b>|*_ & 'co'"""
    state = validate_text(
        f"version: 1\npolicies:\n  '{name.replace(chr(39), chr(39) * 2)}':\n    allow: []\n"
    )
    assert state.policies[0].name == name


def test_a_utf8_bom_is_accepted() -> None:
    state = validate_text(b"\xef\xbb\xbf" + (FIXTURES / "minimal.yaml").read_bytes())
    assert state.default_policy == "Block Basic Auth"


def test_limits_accept_0_and_100_percent() -> None:
    state = validate_text(
        "version: 1\nsafety:\n  max_user_changes: 100%\n  max_policy_deletes: 0\n"
    )
    assert state.safety == Safety(Limit(100.0, percent=True), Limit(0.0))
    assert validate_text("version: 1\nsafety:\n  max_user_changes: 2.5%\n").safety == Safety(
        Limit(2.5, percent=True), None
    )


def test_tenant_may_be_a_guid() -> None:
    guid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert validate_text(f"version: 1\ntenant: {guid}\n").tenant == guid


# --------------------------------------------------------------------------- canonical data

SAME_MEANING = [
    """\
version: 1
policies:
  B: {allow: [smtp, imap]}
  A: {allow: []}
remove_policies: [Old, older]
assignments:
  rules:
    - {name: r, policy: A, match: {users: [X@c.com, a@c.com], recipient_type: [usermailbox]}}
safety: {max_user_changes: 10%}
""",
    """\
# the same meaning, written differently
version: 1
safety:
  max_user_changes: "10%"
  max_policy_deletes: null
assignments:
  unmatched: ignore
  revoke_sessions: true
  rules:
    - name: r
      policy: a
      match:
        recipient_type: [UserMailbox]
        users: [a@c.com, x@C.COM]
remove_policies: [older, Old]
prune_policies: false
policies:
  A:
    allow: []
  B:
    allow: [imap, smtp]
""",
]


def test_same_meaning_gives_the_same_canonical_data() -> None:
    first, second = (validate_text(text).canonical for text in SAME_MEANING)
    assert first == second
    assert first == {
        "version": 1,
        "tenant": None,
        "policies": {"A": {"allow": []}, "B": {"allow": ["imap", "smtp"]}},
        "remove_policies": ["Old", "older"],
        "prune_policies": False,
        "manage_default": False,
        "default_policy": None,
        "assignments": {
            "unmatched": "ignore",
            "revoke_sessions": True,
            "recipient_types": sorted(DEFAULT_RECIPIENT_TYPES),
            "rules": [
                {
                    "name": "r",
                    "policy": "A",
                    "match": {"users": ["a@c.com", "x@c.com"], "recipient_type": ["usermailbox"]},
                    "except": None,
                    "smtp_auth": None,
                    "owner": None,
                    "reason": None,
                    "expires": None,
                }
            ],
        },
        "smtp_auth": {"organization": None, "unmatched": "ignore"},
        "safety": {
            "max_user_changes": "10%",
            "max_policy_deletes": None,
            "max_active_users_blocked": None,
        },
        "evidence": {"sign_in_days": None},
    }


def test_canonical_data_tells_omitted_default_from_null_and_keeps_rule_order() -> None:
    base = "version: 1\npolicies:\n  P:\n    allow: []\n"
    assert validate_text(base).canonical != validate_text(base + "default_policy: null\n").canonical
    rules = (
        "assignments:\n  rules:\n"
        "    - {name: a, policy: P, match: {users: [a@c.com]}}\n"
        "    - {name: b, policy: null, match: {users: [b@c.com]}}\n"
    )
    swapped = (
        rules.replace("name: a", "name: X")
        .replace("name: b", "name: a")
        .replace("name: X", "name: b")
    )
    assert validate_text(base + rules).canonical != validate_text(base + swapped).canonical


# --------------------------------------------------------------------------- the file itself


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_desired_state(missing)
    assert caught.value.problems == [f"{missing}: file not found"]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_desired_state(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: is a directory, not a file"]


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests may run as root, who can read a chmod-0 file; so make open() refuse.
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(loader.os, "open", refuse)
    with pytest.raises(ConfigError) as caught:
        load_desired_state(tmp_path / "p.yaml")
    assert caught.value.problems == [f"{tmp_path / 'p.yaml'}: permission denied"]


def test_windows_line_endings_read_the_same(tmp_path: Path) -> None:
    text = (ROOT / "policies.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_bytes(text.replace("\n", "\r\n").encode())
    original = load_desired_state(ROOT / "policies.yaml")
    assert load_desired_state(path).canonical == original.canonical
    broken = text.replace("allow: [smtp]", "allow: [smpt]").replace("\n", "\r\n")
    with pytest.raises(ConfigError) as caught:
        validate_text(broken, "p.yaml")
    assert caught.value.problems == [
        "p.yaml:22:13: policies.SMTP relay devices.allow[0]: unknown protocol 'smpt'; "
        "did you mean 'smtp'?"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\n")
    path.chmod(0)
    with pytest.raises(ConfigError) as caught:
        load_desired_state(path)
    assert caught.value.problems == [f"{path}: permission denied"]


def test_file_over_5_mib_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"version: 1\n" + b"# padding\n" * (limits.MAX_FILE_BYTES // 10))
    size = path.stat().st_size
    with pytest.raises(ConfigError) as caught:
        load_desired_state(path)
    assert caught.value.problems == [
        f"{path}:1:1: (document): the file is {size:,} bytes; the limit is 5,242,880 bytes (5 MiB)"
    ]


def test_an_endless_device_is_refused_before_any_read() -> None:
    with pytest.raises(ConfigError) as caught:
        load_desired_state("/dev/zero")
    assert caught.value.problems == [
        "/dev/zero: is not a regular file (a FIFO, device or socket); name the file"
    ]


def test_a_file_of_exactly_5_mib_is_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    head = b"version: 1\n"
    path.write_bytes(head + b"#" * (limits.MAX_FILE_BYTES - len(head) - 1) + b"\n")
    assert load_desired_state(path).version == 1


def test_many_problems_fixture_lists_each_once_in_file_order() -> None:
    path = FIXTURES / "many_problems.yaml"
    with pytest.raises(ConfigError) as caught:
        load_desired_state(path)
    assert caught.value.problems == [
        f"{path}:3:9: tenant: 'contoso onmicrosoft com' is not a tenant ID: use the tenant GUID "
        "or a domain such as contoso.onmicrosoft.com",
        f"{path}:6:13: policies.Block Basic Auth.allow[0]: unknown protocol 'smpt'; "
        "did you mean 'smtp'?",
        f"{path}:7:3: policies.block basic auth: policy 'block basic auth' is the same name as "
        "'Block Basic Auth' (line 5); policy names are compared case-insensitively",
        f"{path}:9:17: default_policy: policy 'Block Basic Auht' is not declared in policies; "
        "did you mean 'Block Basic Auth'?",
        f"{path}:14:14: assignments.rules[everyone].match: `match: all` without `except` matches "
        "every user, so the rules after it can never match: 'devices'; move this rule to the end",
    ]


def test_a_fifo_or_device_as_config_is_refused_without_waiting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    import pytest

    from reconciler.desired import load_desired_state
    from reconciler.errors import ConfigError

    fifo = tmp_path / "policies.yaml"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading would block forever
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(ConfigError) as err:
            load_desired_state(path)
        assert err.value.problems == [
            f"{path}: is not a regular file (a FIFO, device or socket); name the file"
        ]
