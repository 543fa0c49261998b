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
from operator import attrgetter

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
_UPN = attrgetter("upn")
_ID = attrgetter("id")


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


@dataclass
class UserIndex:
    """Casefolded per-key value columns over a snapshot's users, built lazily, once per plan.

    A key's matches are found with `compress(range(n), map(wanted.__contains__, column))`:
    the whole scan runs in C, so a rule costs a few milliseconds per 100,000 users.
    """

    users: Sequence[TenantUser]
    groups: Mapping[str, frozenset[str]]
    _columns: dict[str, list[str | None]] = field(default_factory=dict)
    missing_groups: set[str] = field(default_factory=set)

    @property
    def everyone(self) -> set[int]:
        return set(range(len(self.users)))

    def column(self, key: str) -> list[str | None]:
        """The casefolded value of `key` for every user, in snapshot order."""
        key = "upn" if key == "users" else key  # same values: share one column
        column = self._columns.get(key)
        if column is not None:
            return column
        if key == "upn":
            column = list(map(str.casefold, map(_UPN, self.users)))
        elif key == "id":
            column = list(map(_ID, self.users))
        else:
            if key == "domain":
                raw = [
                    upn.rpartition("@")[2] if "@" in upn else None  # type: ignore[operator,union-attr]
                    for upn in self.column("upn")
                ]
            else:
                raw = list(map(attrgetter(key), self.users))
            # Few distinct values (departments, countries, ...): casefold each once, then map
            # the column through the table in C. None maps to None (dict.get's default).
            folded = {v: v.casefold() for v in set(raw) if v is not None}
            column = list(map(folded.get, raw))
        self._columns[key] = column
        return column

    def _scan(self, key: str, test: Callable[[str | None], object]) -> set[int]:
        return set(compress(range(len(self.users)), map(test, self.column(key))))

    def positions_with(self, key: str, values: Iterable[str]) -> set[int]:
        """Users whose `key` equals any of `values` (case-insensitively)."""
        wanted = {value.casefold() for value in values}
        return self._scan(key, wanted.__contains__)

    def positions_matching_globs(self, patterns: Iterable[str]) -> set[int]:
        """Users whose UPN matches any glob (fnmatch syntax, case-insensitive)."""
        exact = [p for p in patterns if not _GLOB_CHARS.search(p)]
        globs = [p for p in patterns if _GLOB_CHARS.search(p)]
        found = self.positions_with("upn", exact) if exact else set()
        if globs:
            # One compiled alternation; fnmatch.translate anchors each branch at the end.
            regex = re.compile("|".join(fnmatch.translate(p.casefold()) for p in globs))
            found |= self._scan("upn", regex.match)  # type: ignore[arg-type]
        return found

    def positions_in_groups(self, names: Iterable[str]) -> set[int]:
        """Members of any of the groups (nested groups already expanded in the snapshot)."""
        member_ids: set[str] = set()
        for name in names:
            members = self.groups.get(name.casefold())
            if members is None:
                self.missing_groups.add(name)
            else:
                member_ids |= members
        return self._scan("id", member_ids.__contains__) if member_ids else set()

    def positions_matching(self, spec: MatchSpec) -> set[int]:
        """Every user the spec matches."""
        if spec.match_all:
            return self.everyone
        result: set[int] | None = None
        for key in MATCH_KEYS:
            values: tuple[str, ...] = getattr(spec, key)
            if not values:
                continue
            if key == "upn":
                matched = self.positions_matching_globs(values)
            elif key == "member_of":
                matched = self.positions_in_groups(values)
            else:
                matched = self.positions_with(key, values)
            result = matched if result is None else result & matched
        return result if result is not None else set()


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
    taken: set[int] = set()
    matched_counts: list[int] = []
    governed_counts: list[int] = []
    for position, rule in enumerate(rules):
        matched = index.positions_matching(rule.match)
        if rule.except_ is not None and matched:
            matched -= index.positions_matching(rule.except_)
        fresh = matched - taken if taken else matched
        for user_position in fresh:
            rule_of_user[user_position] = position
        taken |= fresh
        matched_counts.append(len(matched))
        governed_counts.append(len(fresh))
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
