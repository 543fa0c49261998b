"""Hard limits on policies.yaml, enforced while reading so hostile input fails fast.

docs/configuration.md (section "Limits") states the same numbers; change both together.
"""

from __future__ import annotations

MAX_FILE_BYTES = 5 * 1024 * 1024  # 5 MiB: a real file is a few KB
MAX_NODES = 100_000  # YAML values in the whole file (scalars, lists, mappings)
MAX_DEPTH = 32  # nesting; the format needs 6
MAX_POLICIES = 500  # entries of `policies`
MAX_REMOVE_POLICIES = 500  # entries of `remove_policies`
MAX_RULES = 1_000  # entries of `assignments.rules`
MAX_LIST_ITEMS = 10_000  # entries of any other list, e.g. one rule's `users`
MAX_POLICY_NAME = 64  # Exchange's own limit (New-AuthenticationPolicy -Name)
MAX_RULE_NAME = 128
MAX_STRING = 256  # any other string value (a UPN is at most 113 characters)
# The glob budget: every user's UPN is tried against every `upn` glob of the file.
MAX_GLOBS = 200  # `upn` globs in the whole file (match and except of every rule)
MAX_GLOB_STARS = 10  # `*` in one glob


def max_items(path: tuple[str | int, ...]) -> tuple[int, str]:
    """The most entries the list or mapping at `path` may have, and what to call them."""
    if path == ("policies",):
        return MAX_POLICIES, "policies"
    if path == ("remove_policies",):
        return MAX_REMOVE_POLICIES, "policy names"
    if path == ("assignments", "rules"):
        return MAX_RULES, "rules"
    return MAX_LIST_ITEMS, "entries"
