"""Rule evaluation: which rule (first match wins) governs each user.

Built for 100,000 users against a few dozen rules: every match key is compiled once into a
lookup over the snapshot (casefolded value -> user positions, a compiled regex for globs, the
member ids of a group), and a rule's matches are computed as set operations over user
positions instead of testing every user against every rule in Python.

Semantics (DESIGN.md): AND across keys, OR within a key's list, strings compare
case-insensitively, `match: all` matches everyone, `except` has the same shape as `match`.
A spec that constrains nothing and is not `match: all` matches no one (the loader refuses it;
matching no one is the safe reading should one slip through).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

from reconciler.model import MATCH_KEYS, MatchSpec, Rule, TenantUser

# User attributes that are not always read (SnapshotNeeds.attributes).
OPTIONAL_ATTRIBUTES: tuple[str, ...] = (
    "department",
    "company",
    "office",
    "title",
    "city",
    "country",
)

_GLOB_CHARS = re.compile(r"[*?\[]")


def _fold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def _user_value(user: TenantUser, key: str) -> str | None:
    """The casefolded value a match key compares against (None when the user has none)."""
    if key in ("users", "upn"):
        return user.upn.casefold()
    if key == "domain":
        _, at, domain = user.upn.rpartition("@")
        return domain.casefold() if at else None
    if key == "recipient_type":
        return user.recipient_type.casefold()
    return _fold(getattr(user, key))


# A set of users as a mask: one byte per user position (1 = in the set), held as a Python
# int (little-endian: user i is byte i). `&`, `|` and `& ~` on these ints are set
# intersection, union and difference, done in C over 100 KB at 100,000 users.
Mask = int


def _mask(flags: bytes) -> Mask:
    return int.from_bytes(flags, "little")


@dataclass
class UserIndex:
    """Casefolded per-key value columns over a snapshot's users, built lazily, once per plan.

    Matches are masks (see Mask): a rule is a few big-int operations, whatever the number of
    users it matches. A column with at most 256 distinct values (recipient types,
    departments, countries, most domains) is also kept as bytes, one code per user, so the
    users with any of some values come from one `bytes.translate` (wanted code -> 1, other
    codes -> 0) without a Python call per user. Other columns (UPNs, ids) are tested per
    user with `bytes(map(test, column))`, which still runs the loop in C.
    """

    users: Sequence[TenantUser]
    groups: Mapping[str, frozenset[str]]
    # Raw (not casefolded) columns already read from the users (plan.columns); the others
    # are read from the users when needed.
    raw: Mapping[str, list[Any]] = field(default_factory=dict)
    _columns: dict[str, list[str | None]] = field(default_factory=dict)
    _coded: dict[str, tuple[bytes, dict[str | None, int]] | None] = field(default_factory=dict)
    missing_groups: set[str] = field(default_factory=set)

    @property
    def everyone(self) -> Mask:
        return _mask(b"\x01" * len(self.users))

    def positions(self, mask: Mask) -> list[int]:
        """The user positions in a mask, ascending."""
        n = len(self.users)
        return list(compress(range(n), mask.to_bytes(n, "little"))) if mask else []

    def column(self, key: str) -> list[str | None]:
        """The casefolded value of `key` for every user, in snapshot order."""
        key = "upn" if key == "users" else key  # same values: share one column
        column = self._columns.get(key)
        if column is not None:
            return column
        if key == "upn":
            column = list(map(str.casefold, self._raw("upn")))
        elif key == "id":
            column = self._raw("id")
        else:
            if key == "domain":
                # (separator, text after the last @) per user, by maps that run in C; then
                # the few distinct pairs -> domain (None for a UPN without @).
                parts = list(
                    map(itemgetter(1, 2), map(methodcaller("rpartition", "@"), self.column("upn")))
                )
                domain_of = {pair: (pair[1] if pair[0] else None) for pair in set(parts)}
                raw = list(map(domain_of.__getitem__, parts))
            else:
                raw = self._raw(key)
            # Few distinct values (departments, countries, ...): casefold each once, then map
            # the column through the table in C. None maps to None (dict.get's default).
            folded = {v: v.casefold() for v in set(raw) if v is not None}
            column = list(map(folded.get, raw))
        self._columns[key] = column
        return column

    def _raw(self, name: str) -> list[Any]:
        column = self.raw.get(name)
        return column if column is not None else list(map(attrgetter(name), self.users))

    def _test(self, key: str, test: Callable[[Any], object]) -> Mask:
        return _mask(bytes(map(bool, map(test, self.column(key)))))

    def mask_with(self, key: str, values: Iterable[str]) -> Mask:
        """Users whose `key` equals any of `values` (case-insensitively)."""
        wanted = {value.casefold() for value in values}
        coded = self.coded(key)
        if coded is None:
            return self._test(key, wanted.__contains__)
        codes, code_of = coded
        hits = {code_of[value] for value in wanted if value in code_of}
        if not hits:
            return 0
        return _mask(codes.translate(bytes(1 if code in hits else 0 for code in range(256))))

    def coded(self, key: str) -> tuple[bytes, dict[str | None, int]] | None:
        """(one byte per user, value -> code) for a column of at most 256 distinct values."""
        key = "upn" if key == "users" else key
        if key in ("upn", "id"):
            return None  # one value per user: no table to gain from
        if key not in self._coded:
            column = self.column(key)
            distinct = set(column)
            if len(distinct) > 256:
                self._coded[key] = None
            else:
                code_of = {value: code for code, value in enumerate(distinct)}
                self._coded[key] = (bytes(map(code_of.__getitem__, column)), code_of)
        return self._coded[key]

    def mask_matching_globs(self, patterns: Iterable[str]) -> Mask:
        """Users whose UPN matches any glob (fnmatch syntax, case-insensitive)."""
        exact = [p for p in patterns if not _GLOB_CHARS.search(p)]
        globs = [p for p in patterns if _GLOB_CHARS.search(p)]
        found = self.mask_with("upn", exact) if exact else 0
        if globs:
            # One compiled alternation; fnmatch.translate anchors each branch at the end.
            regex = re.compile("|".join(fnmatch.translate(p.casefold()) for p in globs))
            found |= self._test("upn", regex.match)
        return found

    def mask_in_groups(self, names: Iterable[str]) -> Mask:
        """Members of any of the groups (nested groups already expanded in the snapshot)."""
        member_ids: set[str] = set()
        for name in names:
            members = self.groups.get(name.casefold())
            if members is None:
                self.missing_groups.add(name)
            else:
                member_ids |= members
        return self._test("id", member_ids.__contains__) if member_ids else 0

    def mask_matching(self, spec: MatchSpec) -> Mask:
        """Every user the spec matches."""
        if spec.match_all:
            return self.everyone
        result: Mask | None = None
        for key in MATCH_KEYS:
            values: tuple[str, ...] = getattr(spec, key)
            if not values:
                continue
            if key == "upn":
                matched = self.mask_matching_globs(values)
            elif key == "member_of":
                matched = self.mask_in_groups(values)
            else:
                matched = self.mask_with(key, values)
            result = matched if result is None else result & matched
        return result if result is not None else 0

    def positions_matching(self, spec: MatchSpec) -> set[int]:
        """Every user the spec matches, as positions."""
        return set(self.positions(self.mask_matching(spec)))


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """For each user position, the index of the rule that governs it (-1: no rule matched)."""

    rule_of_user: list[int]
    # Per rule: users it matches at all (after except), and users it governs (first match).
    matched_counts: tuple[int, ...]
    governed_counts: tuple[int, ...]
    missing_groups: frozenset[str]


def evaluate_rules(rules: Sequence[Rule], index: UserIndex) -> RuleEvaluation:
    """Apply the rules in order; the first rule that matches a user governs it."""
    rule_of_user = [-1] * len(index.users)
    taken: Mask = 0
    matched_counts: list[int] = []
    governed_counts: list[int] = []
    for position, rule in enumerate(rules):
        matched = index.mask_matching(rule.match)
        if rule.except_ is not None and matched:
            matched &= ~index.mask_matching(rule.except_)
        fresh = matched & ~taken
        for user_position in index.positions(fresh):
            rule_of_user[user_position] = position
        taken |= fresh
        matched_counts.append(matched.bit_count())  # one bit set per user (bytes of 0 or 1)
        governed_counts.append(fresh.bit_count())
    return RuleEvaluation(
        rule_of_user=rule_of_user,
        matched_counts=tuple(matched_counts),
        governed_counts=tuple(governed_counts),
        missing_groups=frozenset(index.missing_groups),
    )


def spec_matches_user(
    spec: MatchSpec, user: TenantUser, groups: Mapping[str, frozenset[str]]
) -> bool:
    """One user against one spec, the slow and obvious way (reports, and a test oracle)."""
    if spec.match_all:
        return True
    constrained = False
    for key in MATCH_KEYS:
        values: tuple[str, ...] = getattr(spec, key)
        if not values:
            continue
        constrained = True
        if key == "member_of":
            ok = any(user.id in groups.get(v.casefold(), frozenset()) for v in values)
        elif key == "upn":
            ok = any(fnmatch.fnmatchcase(user.upn.casefold(), v.casefold()) for v in values)
        else:
            mine = _user_value(user, key)
            ok = mine is not None and any(mine == v.casefold() for v in values)
        if not ok:
            return False
    return constrained
