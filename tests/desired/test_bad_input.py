# ruff: noqa: E501  (expected messages are kept whole so they read as the user sees them)
"""Every kind of bad policies.yaml gets exactly one precise line: file, line, column, key, message.

Each case is a small document (most are the valid BASE with one mistake made in it) and the
exact list of problem lines it must produce.
"""

from __future__ import annotations

import pytest

from reconciler.desired import validate_text
from reconciler.errors import ConfigError

BASE = """\
version: 1
policies:
  Block Basic Auth:
    allow: []
  SMTP relay devices:
    allow: [smtp]
remove_policies: [Legacy 2018 Policy]
default_policy: Block Basic Auth
assignments:
  rules:
    - name: devices
      policy: SMTP relay devices
      match: {upn: ["scanner-*@contoso.com"]}
    - name: everyone
      policy: Block Basic Auth
      match: all
"""


def edit(old: str, new: str) -> str:
    """BASE with exactly one edit (fails loudly if the text to replace is not there once)."""
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def add_policy(name: str) -> str:
    """BASE with one more policy, written as `name` (YAML source text), on line 5."""
    return edit("  SMTP relay devices:", f"  {name}:\n    allow: []\n  SMTP relay devices:")


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_text(text, "p.yaml")
    problems = caught.value.problems
    assert all("\n" not in line for line in problems)
    return problems


RULE = "assignments.rules[devices]"

CASES: list[tuple[str, str | bytes, list[str]]] = [
    # ------------------------------------------------------------ globs
    (
        "glob with an unclosed [",
        edit(
            'match: {upn: ["scanner-*@contoso.com"]}', 'match: {upn: ["scanner-[0-9*@contoso.com"]}'
        ),
        [
            f"p.yaml:13:21: {RULE}.match.upn[0]: 'scanner-[0-9*@contoso.com' has an unclosed "
            "'[': a set of characters needs its ']' (e.g. scanner-[0-9]*@contoso.com); write [[] "
            "for a literal '['"
        ],
    ),
    (
        "glob over the star budget",
        edit(
            'match: {upn: ["scanner-*@contoso.com"]}',
            'match: {upn: ["s*c*a*n*n*e*r*-*x*y*z*@contoso.com"]}',
        ),
        [
            f"p.yaml:13:21: {RULE}.match.upn[0]: 's*c*a*n*n*e*r*-*x*y*z*@contoso.com' has 11 "
            "'*'; the glob budget is 10 per glob: one '*' stands for any text already"
        ],
    ),
    (
        "more globs than the budget",
        edit(
            'match: {upn: ["scanner-*@contoso.com"]}',
            "match: {upn: [" + ", ".join(f'"s{i}-*@contoso.com"' for i in range(201)) + "]}",
        ),
        [
            f"p.yaml:13:4311: {RULE}.match.upn[200]: more than 200 upn globs in the file; that is "
            "the glob budget (every user's UPN is tried against every glob): list people in "
            "`users`, or match on a group or an attribute"
        ],
    ),
    # ------------------------------------------------------------ SMTP AUTH and exceptions
    (
        "rule smtp_auth not one of the three",
        edit(
            "      policy: SMTP relay devices\n",
            "      policy: SMTP relay devices\n      smtp_auth: enable\n",
        ),
        [
            f"p.yaml:13:18: {RULE}.smtp_auth: 'enable' is not one of 'enabled', 'disabled', "
            "'organization'; did you mean 'enabled'?"
        ],
    ),
    (
        "organization smtp_auth misspelt",
        BASE + "smtp_auth:\n  organization: disable\n",
        [
            "p.yaml:18:17: smtp_auth.organization: 'disable' is not one of 'disabled', "
            "'enabled'; did you mean 'disabled'?"
        ],
    ),
    (
        "smtp_auth unknown key",
        BASE + "smtp_auth:\n  unmatch: organization\n",
        ["p.yaml:18:3: smtp_auth.unmatch: unknown key 'unmatch'; did you mean 'unmatched'?"],
    ),
    (
        "expires not a date",
        edit(
            "      policy: SMTP relay devices\n",
            "      policy: SMTP relay devices\n      expires: next spring\n",
        ),
        [
            f"p.yaml:13:16: {RULE}.expires: 'next spring' is not a date: write the UTC date as "
            "YYYY-MM-DD, e.g. 2027-03-31"
        ],
    ),
    (
        "expires not a calendar date",
        edit(
            "      policy: SMTP relay devices\n",
            "      policy: SMTP relay devices\n      expires: 2027-02-30\n",
        ),
        [
            f"p.yaml:13:16: {RULE}.expires: '2027-02-30' is not a calendar date; write a real "
            "UTC date as YYYY-MM-DD, e.g. 2027-03-31"
        ],
    ),
    (
        "owner empty",
        edit(
            "      policy: SMTP relay devices\n",
            "      policy: SMTP relay devices\n      owner: ''\n",
        ),
        [f"p.yaml:13:14: {RULE}.owner: is empty; write a value or leave the key out"],
    ),
    # ------------------------------------------------------------ not YAML / not readable
    (
        "binary file",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        [
            "p.yaml:1:1: (document): not valid UTF-8 (byte 0x89); policies.yaml must be a UTF-8 text file"
        ],
    ),
    (
        "NUL byte in text",
        "version: 1\x00\n",
        [
            "p.yaml:1:11: (document): the file contains a NUL byte: this looks like a binary file, not YAML"
        ],
    ),
    (
        "control character",
        "version: 1\npolicies: {}\x07\n",
        [
            "p.yaml:2:13: (document): the file contains control character U+0007, "
            "which YAML does not allow"
        ],
    ),
    (
        "latin-1 bytes",
        BASE.replace("Block Basic Auth:", "Bl\xf6ck:").encode("latin-1"),
        [
            "p.yaml:3:5: (document): not valid UTF-8 (byte 0xf6); policies.yaml must be a UTF-8 text file"
        ],
    ),
    (
        "UTF-16",
        "version: 1\n".encode("utf-16"),
        ["p.yaml:1:1: (document): the file is UTF-16; save it as UTF-8"],
    ),
    (
        "plain prose",
        "Please block basic auth for everyone.\n",
        [
            "p.yaml:1:1: (document): must be a mapping of settings (`version: 1`, `policies:`, ...), "
            "got a string 'Please block basic auth for everyone.'"
        ],
    ),
    (
        "syntax error in a flow list",
        "version: 1\npolicies:\n  a: [1\n  b: 2\n",
        [
            "p.yaml:4:4: (document): YAML syntax error: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence at line 3)"
        ],
    ),
    (
        "syntax error: bad indentation",
        "version: 1\npolicies:\n  A:\n    allow: []\n   B:\n",
        [
            "p.yaml:5:4: (document): YAML syntax error: expected <block end>, but found "
            "'<block mapping start>' (while parsing a block mapping at line 3)"
        ],
    ),
    (
        "empty file",
        "",
        ["p.yaml:1:1: (document): the file is empty; expected `version: 1` and policies"],
    ),
    (
        "only comments",
        "# nothing here yet\n",
        ["p.yaml:1:1: (document): the file is empty; expected `version: 1` and policies"],
    ),
    (
        "top-level list",
        "- version: 1\n",
        [
            "p.yaml:1:1: (document): must be a mapping of settings (`version: 1`, `policies:`, ...), "
            "got a list"
        ],
    ),
    (
        "two YAML documents",
        "version: 1\n---\nversion: 1\n",
        [
            "p.yaml:2:1: (document): a second YAML document ('---') is not allowed; "
            "keep one document per file"
        ],
    ),
    (
        "tabs for indentation",
        "version: 1\npolicies:\n\tBlock:\n\t\tallow: []\n",
        ["p.yaml:3:1: (document): a tab is used for indentation; YAML allows only spaces there"],
    ),
    (
        "tab after spaces",
        "version: 1\npolicies:\n  Block:\n  \tallow: []\n",
        ["p.yaml:4:3: (document): a tab is used for indentation; YAML allows only spaces there"],
    ),
    # ------------------------------------------------------------ YAML features refused
    (
        "duplicate top-level key",
        "version: 1\npolicies: {}\nversion: 1\n",
        ["p.yaml:3:1: version: duplicate key 'version' (first written on line 1)"],
    ),
    (
        "duplicate key deep inside",
        edit(
            "      policy: Block Basic Auth\n",
            "      policy: Block Basic Auth\n      policy: null\n",
        ),
        [
            "p.yaml:16:7: assignments.rules[everyone].policy: duplicate key 'policy' "
            "(first written on line 15)"
        ],
    ),
    (
        "duplicate policy name",
        edit(
            "  SMTP relay devices:\n", "  Block Basic Auth:\n    allow: []\n  SMTP relay devices:\n"
        ),
        [
            "p.yaml:5:3: policies.Block Basic Auth: duplicate key 'Block Basic Auth' (first written on line 3)"
        ],
    ),
    (
        "alias (billion laughs)",
        'version: 1\na: &a ["lol", "lol"]\nb: &b [*a, *a]\nc: [*b, *b]\n',
        ["p.yaml:3:8: b[0]: YAML aliases (*a) are not supported; write the value out"],
    ),
    (
        "custom tag",
        "version: 1\npolicies: !!python/object:os.system {}\n",
        ["p.yaml:2:11: policies: YAML tag '!!python/object:os.system' is not supported here"],
    ),
    (
        "a list used as a key",
        "version: 1\n? [a, b]\n: c\n",
        ["p.yaml:2:3: (document): a key must be a plain string"],
    ),
    # ------------------------------------------------------------ version and top level
    (
        "version missing",
        "policies: {}\n",
        ["p.yaml:1:1: version: missing; write `version: 1` at the top of the file"],
    ),
    (
        "version 2",
        edit("version: 1", "version: 2"),
        ["p.yaml:1:10: version: unsupported version 2; this authpolicy reads version 1"],
    ),
    (
        "version as a string",
        edit("version: 1", "version: 'one'"),
        ["p.yaml:1:10: version: unsupported version 'one'; this authpolicy reads version 1"],
    ),
    (
        "unknown top-level key",
        edit("default_policy:", "default_polcy:"),
        ["p.yaml:8:1: default_polcy: unknown key 'default_polcy'; did you mean 'default_policy'?"],
    ),
    (
        "tenant that is not a tenant",
        edit("version: 1\n", "version: 1\ntenant: my tenant\n"),
        [
            "p.yaml:2:9: tenant: 'my tenant' is not a tenant ID: use the tenant GUID or a domain "
            "such as contoso.onmicrosoft.com"
        ],
    ),
    (
        "prune_policies not a boolean",
        edit("version: 1\n", "version: 1\nprune_policies: yes\n"),
        ["p.yaml:2:17: prune_policies: must be true or false, got a string 'yes'"],
    ),
    # ------------------------------------------------------------ policies
    (
        "policy name over 64 characters",
        add_policy("S" * 65),
        ["p.yaml:5:3: policies." + "S" * 65 + ": policy name is 65 characters; the limit is 64"],
    ),
    (
        "empty policy name",
        add_policy("''"),
        ["p.yaml:5:3: policies.'': policy name is empty"],
    ),
    (
        "policy names equal ignoring case",
        add_policy("block basic auth"),
        [
            "p.yaml:5:3: policies.block basic auth: policy 'block basic auth' is the same name as "
            "'Block Basic Auth' (line 3); policy names are compared case-insensitively"
        ],
    ),
    (
        "policy name with a newline",
        add_policy('"SMTP\\nrelay"'),
        [
            "p.yaml:5:3: policies.SMTP\\nrelay: policy name 'SMTP\\nrelay' contains a control "
            "character (\\n); newlines, tabs and other control characters are not allowed"
        ],
    ),
    (
        "unknown protocol",
        edit("allow: [smtp]", "allow: [imap, smpt]"),
        [
            "p.yaml:6:19: policies.SMTP relay devices.allow[1]: unknown protocol 'smpt'; did you mean 'smtp'?"
        ],
    ),
    (
        "unknown protocol, nothing close",
        edit("allow: [smtp]", "allow: [fax]"),
        [
            "p.yaml:6:13: policies.SMTP relay devices.allow[0]: unknown protocol 'fax'; protocols are: "
            "activesync, autodiscover, imap, mapi, offline_address_book, outlook_service, pop, "
            "powershell, reporting_web_services, rpc, smtp, web_services"
        ],
    ),
    (
        "protocol listed twice",
        edit("allow: [smtp]", "allow: [smtp, pop, smtp]"),
        [
            "p.yaml:6:24: policies.SMTP relay devices.allow[2]: protocol 'smtp' is listed twice (first at [0])"
        ],
    ),
    (
        "allow not a list",
        edit("allow: [smtp]", "allow: smtp"),
        [
            "p.yaml:6:12: policies.SMTP relay devices.allow: must be a list of protocols, e.g. [smtp], "
            "or [] to block Basic auth everywhere, got a string 'smtp'"
        ],
    ),
    (
        "allow missing",
        edit("  SMTP relay devices:\n    allow: [smtp]\n", "  SMTP relay devices: {}\n"),
        [
            "p.yaml:5:23: policies.SMTP relay devices.allow: missing; list the protocols that keep "
            "Basic auth, or [] to block it everywhere"
        ],
    ),
    (
        "policy without settings",
        edit("  SMTP relay devices:\n    allow: [smtp]\n", "  SMTP relay devices:\n"),
        [
            "p.yaml:5:3: policies.SMTP relay devices: must be a mapping with `allow: [...]`, got null"
        ],
    ),
    (
        "unknown key in a policy",
        edit("allow: [smtp]", "allowed: [smtp]"),
        [
            "p.yaml:6:5: policies.SMTP relay devices.allowed: unknown key 'allowed'; did you mean 'allow'?"
        ],
    ),
    (
        "policy name ending in a newline",
        edit("policy: SMTP relay devices", 'policy: "SMTP relay devices\\n"'),
        [
            f"p.yaml:12:15: {RULE}.policy: policy name 'SMTP relay devices\\n' contains a control "
            "character (\\n); newlines, tabs and other control characters are not allowed"
        ],
    ),
    (
        "a number where a name is expected",
        edit("default_policy: Block Basic Auth", "default_policy: 2024"),
        [
            "p.yaml:8:17: default_policy: must be a string or null, got a number 2024; "
            "write it in quotes to mean the text"
        ],
    ),
    # ------------------------------------------------------------ remove_policies / default
    (
        "policy declared and removed",
        edit("[Legacy 2018 Policy]", "[smtp relay devices]"),
        [
            "p.yaml:7:19: remove_policies[0]: policy 'smtp relay devices' is declared in policies "
            "(line 5) and also listed in remove_policies; keep it or remove it, not both"
        ],
    ),
    (
        "policy removed twice",
        edit("[Legacy 2018 Policy]", "[Legacy 2018 Policy, LEGACY 2018 policy]"),
        ["p.yaml:7:39: remove_policies[1]: 'LEGACY 2018 policy' is listed twice (first at [0])"],
    ),
    (
        "default_policy undeclared",
        edit("default_policy: Block Basic Auth", "default_policy: Block Basic Auht"),
        [
            "p.yaml:8:17: default_policy: policy 'Block Basic Auht' is not declared in policies; "
            "did you mean 'Block Basic Auth'?"
        ],
    ),
    (
        "default_policy is being removed",
        edit("default_policy: Block Basic Auth", "default_policy: Legacy 2018 Policy"),
        [
            "p.yaml:8:17: default_policy: policy 'Legacy 2018 Policy' is listed in remove_policies, "
            "so it cannot be assigned"
        ],
    ),
    # ------------------------------------------------------------ rules
    (
        "rule policy undeclared",
        edit("policy: SMTP relay devices", "policy: SMTP relays"),
        [
            f"p.yaml:12:15: {RULE}.policy: policy 'SMTP relays' is not declared in policies; "
            "did you mean 'SMTP relay devices'?"
        ],
    ),
    (
        "rule policy is in remove_policies",
        edit("policy: SMTP relay devices", "policy: Legacy 2018 Policy"),
        [
            f"p.yaml:12:15: {RULE}.policy: policy 'Legacy 2018 Policy' is listed in remove_policies, "
            "so it cannot be assigned"
        ],
    ),
    (
        "two rules with the same name",
        edit("name: everyone", "name: DEVICES"),
        [
            "p.yaml:14:13: assignments.rules[DEVICES].name: rule name 'DEVICES' is already used on line 11"
        ],
    ),
    (
        "rule without match",
        edit('      match: {upn: ["scanner-*@contoso.com"]}\n', ""),
        [
            f"p.yaml:11:7: {RULE}.match: missing; say which users the rule covers "
            "(`match: all` for everyone)"
        ],
    ),
    (
        "rule without policy",
        edit("      policy: SMTP relay devices\n", ""),
        [
            f"p.yaml:11:7: {RULE}.policy: missing; say which policy the rule assigns "
            "(null: no direct policy)"
        ],
    ),
    (
        "rule without name",
        edit("    - name: devices\n      policy", "    - policy"),
        ["p.yaml:11:7: assignments.rules[0].name: missing; every rule needs a unique name"],
    ),
    (
        "unknown match key",
        edit("{upn: [", "{upns: ["),
        [f"p.yaml:13:15: {RULE}.match.upns: unknown match key 'upns'; did you mean 'upn'?"],
    ),
    (
        "unknown except key",
        edit("      match: all\n", "      match: all\n      except: {member: [X]}\n"),
        [
            "p.yaml:17:16: assignments.rules[everyone].except.member: unknown match key 'member'; "
            "did you mean 'member_of'?"
        ],
    ),
    (
        "empty match list",
        edit('{upn: ["scanner-*@contoso.com"]}', "{upn: []}"),
        [
            f"p.yaml:13:20: {RULE}.match.upn: is empty, so it would match nobody; list at least one "
            "value or remove the key"
        ],
    ),
    (
        "empty match mapping",
        edit('{upn: ["scanner-*@contoso.com"]}', "{}"),
        [
            f"p.yaml:13:14: {RULE}.match: has no match keys; write `match: all` to match everyone, "
            "or add keys"
        ],
    ),
    (
        "match is a word other than all",
        edit('{upn: ["scanner-*@contoso.com"]}', "everyone"),
        [
            f"p.yaml:13:14: {RULE}.match: must be 'all' or a mapping of match keys, got a string 'everyone'"
        ],
    ),
    (
        "except: all",
        edit("      match: all\n", "      match: all\n      except: all\n"),
        [
            "p.yaml:17:15: assignments.rules[everyone].except: must be a mapping of match keys "
            "('all' is not allowed in except), got a string 'all'"
        ],
    ),
    (
        "match: all before other rules",
        edit('{upn: ["scanner-*@contoso.com"]}', "all"),
        [
            f"p.yaml:13:14: {RULE}.match: `match: all` without `except` matches every user, so the "
            "rules after it can never match: 'everyone'; move this rule to the end"
        ],
    ),
    (
        "users entry that is not a UPN",
        edit('{upn: ["scanner-*@contoso.com"]}', "{users: [bob]}"),
        [
            f"p.yaml:13:23: {RULE}.match.users[0]: 'bob' is not a user principal name like ann@contoso.com"
        ],
    ),
    (
        "upn glob with a space",
        edit('"scanner-*@contoso.com"', '"scanner *@contoso.com"'),
        [
            f"p.yaml:13:21: {RULE}.match.upn[0]: 'scanner *@contoso.com' is not a UPN pattern: "
            "it must not contain spaces"
        ],
    ),
    (
        "domain that is not a domain",
        edit('{upn: ["scanner-*@contoso.com"]}', "{domain: [contoso]}"),
        [f"p.yaml:13:24: {RULE}.match.domain[0]: 'contoso' is not a domain name like contoso.com"],
    ),
    (
        "unknown recipient type",
        edit('{upn: ["scanner-*@contoso.com"]}', "{recipient_type: [UserMailbox, SharedMailbx]}"),
        [
            f"p.yaml:13:45: {RULE}.match.recipient_type[1]: unknown recipient type 'SharedMailbx'; "
            "did you mean 'SharedMailbox'?"
        ],
    ),
    (
        "match value is not a list",
        edit('{upn: ["scanner-*@contoso.com"]}', "{department: Finance}"),
        [f"p.yaml:13:27: {RULE}.match.department: must be a list, got a string 'Finance'"],
    ),
    (
        "unmatched not a known mode",
        edit("assignments:\n", "assignments:\n  unmatched: clean\n"),
        [
            "p.yaml:10:14: assignments.unmatched: 'clean' is not one of 'ignore', 'clear'; "
            "did you mean 'clear'?"
        ],
    ),
    (
        "rules not a list",
        "version: 1\nassignments:\n  rules: {name: x}\n",
        ["p.yaml:3:10: assignments.rules: must be a list, got a mapping"],
    ),
    # ------------------------------------------------------------ safety
    (
        "percentage over 100%",
        BASE + "safety:\n  max_user_changes: 150%\n",
        ["p.yaml:18:21: safety.max_user_changes: '150%' is over 100%"],
    ),
    (
        "negative percentage",
        BASE + "safety:\n  max_user_changes: -5%\n",
        [
            "p.yaml:18:21: safety.max_user_changes: '-5%' is negative; use a percentage from 0% to 100%"
        ],
    ),
    (
        "negative count",
        BASE + "safety:\n  max_policy_deletes: -1\n",
        ["p.yaml:18:23: safety.max_policy_deletes: must be 0 or more, got -1"],
    ),
    (
        "fractional count",
        BASE + "safety:\n  max_policy_deletes: 1.5\n",
        [
            "p.yaml:18:23: safety.max_policy_deletes: must be a count (0 or more) or a percentage "
            "like '10%', got a number 1.5"
        ],
    ),
    (
        "limit that is a word",
        BASE + "safety:\n  max_user_changes: lots\n",
        ["p.yaml:18:21: safety.max_user_changes: 'lots' is not a count or a percentage like '10%'"],
    ),
    (
        "unknown safety key",
        BASE + "safety:\n  max_user_change: 5\n",
        [
            "p.yaml:18:3: safety.max_user_change: unknown key 'max_user_change'; "
            "did you mean 'max_user_changes'?"
        ],
    ),
    (
        "an integer with thousands of digits",
        edit("version: 1", "version: 1" + "0" * 5000),
        [
            "p.yaml:1:10: version: the number has 5001 digits; at most 15 are accepted: write a "
            "smaller number"
        ],
    ),
    (
        "a limit too large for a float",
        BASE + "safety:\n  max_user_changes: 1" + "0" * 400 + "\n  max_policy_deletes: 1e999\n",
        [
            "p.yaml:18:21: safety.max_user_changes: the number has 401 digits; at most 15 are "
            "accepted: write a smaller number",
            "p.yaml:19:23: safety.max_policy_deletes: the number is too large: write a smaller one",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_exactly_its_message(text: str | bytes, expected: list[str]) -> None:
    assert problems(text) == expected


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_every_problem_is_reported_sorted_by_line() -> None:
    text = """\
version: 1
polices: {}
policies:
  A:
    allow: [smpt]
default_policy: B
assignments:
  rules:
    - name: r
      policy: A
      match: {users: [bob]}
safety:
  max_user_changes: 101%
"""
    assert problems(text) == [
        "p.yaml:2:1: polices: unknown key 'polices'; did you mean 'policies'?",
        "p.yaml:5:13: policies.A.allow[0]: unknown protocol 'smpt'; did you mean 'smtp'?",
        "p.yaml:6:17: default_policy: policy 'B' is not declared in policies",
        "p.yaml:11:23: assignments.rules[r].match.users[0]: 'bob' is not a user principal name "
        "like ann@contoso.com",
        "p.yaml:13:21: safety.max_user_changes: '101%' is over 100%",
    ]


def test_a_reading_problem_does_not_hide_a_schema_problem_at_the_same_place() -> None:
    assert problems("? [a, b]\n: c\n") == [
        "p.yaml:1:1: version: missing; write `version: 1` at the top of the file",
        "p.yaml:1:3: (document): a key must be a plain string",
    ]


def test_a_problem_inside_a_rule_does_not_hide_the_rule_name_check() -> None:
    text = edit("name: everyone", "name: devices").replace("{upn: [", "{upnn: [")
    assert problems(text) == [
        f"p.yaml:13:15: {RULE}.match.upnn: unknown match key 'upnn'; did you mean 'upn'?",
        "p.yaml:14:13: assignments.rules[devices].name: rule name 'devices' is already used on line 11",
    ]


def test_names_that_trim_or_look_alike_are_located_errors() -> None:
    text = (
        "version: 1\npolicies:\n"
        '  "  ":\n    allow: []\n'
        '  " B":\n    allow: []\n'
        '  "Block\u00a0Basic":\n    allow: []\n'
        '  "Block Basic":\n    allow: []\n'
        '  "Caf\u00e9":\n    allow: []\n'
        '  "Cafe\u0301":\n    allow: []\n'
    )
    trimmed = (
        "is blank or starts or ends with white space; write the name without it (Exchange "
        "trims names, so the policy would not be found by the name written here)"
    )
    assert problems(text) == [
        f"p.yaml:3:3: policies.  : policy name '  ' {trimmed}",
        f"p.yaml:5:3: policies. B: policy name ' B' {trimmed}",
        "p.yaml:9:3: policies.Block Basic: policy 'Block Basic' looks like 'Block\\u00a0Basic' "
        "(line 7) but is a different name (differs in U+0020); use one spelling",
        "p.yaml:13:3: policies.Cafe\u0301: policy 'Cafe\u0301' looks like 'Caf\u00e9' (line 11) "
        "but is a different name (differs in U+0065, U+0301); use one spelling",
    ]


def test_names_that_look_alike_across_scripts_are_refused() -> None:
    # Cyrillic о (U+043E) and Greek Α (U+0391) beside their Latin look-alikes.
    text = (
        "version: 1\npolicies:\n"
        '  "Block Basic Auth":\n    allow: []\n'
        '  "Bl\u043eck Basic Auth":\n    allow: []\n'
        '  "Audit":\n    allow: []\n'
        '  "\u0391udit":\n    allow: []\n'
    )
    assert problems(text) == [
        "p.yaml:5:3: policies.Bl\u043eck Basic Auth: policy 'Bl\u043eck Basic Auth' looks like "
        "'Block Basic Auth' (line 3) but is a different name (differs in U+043E); use one "
        "spelling",
        "p.yaml:9:3: policies.\u0391udit: policy '\u0391udit' looks like 'Audit' (line 7) but "
        "is a different name (differs in U+0391); use one spelling",
    ]


def test_the_64_character_limit_is_counted_as_exchange_counts() -> None:
    # 62 letters and one emoji: 63 code points, 64 UTF-16 code units: allowed.
    ok = "A" * 62 + "\U0001f512"
    validate_text(f'version: 1\npolicies:\n  "{ok}":\n    allow: []\n', "p.yaml")
    # 63 letters and one emoji: 64 code points (JSON Schema's count), 65 for Exchange.
    name = "A" * 63 + "\U0001f512"
    assert problems(f'version: 1\npolicies:\n  "{name}":\n    allow: []\n') == [
        f"p.yaml:3:3: policies.{name}: policy name '{name}' is 65 characters as Exchange counts "
        "them (UTF-16 code units; 64 code points); the limit is 64"
    ]
