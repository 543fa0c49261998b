"""The partitions of a partitioned read: disjoint prefix filters that together select everything.

A partition is a list of atoms read by one cursor (their filters joined with -or). An atom is
either every object whose property starts with a prefix (`UserPrincipalName -like 'ab*'`) or
the rest of a prefix: the objects that start with it but with none of the longer prefixes it
was split into (`UserPrincipalName -like 'a*' -and -not (... 'aa*' -or ... 'ab*')`; for the
empty prefix just the -not). Splitting a prefix always yields its rest beside its children, so
whatever Exchange's -like means for a character (case, accents, a character we never chose)
every object falls in exactly one atom: complete and disjoint by construction, never by
knowing the tenant's names (round2-facts.md §3: suffix wildcards, -not supported).

Where to split is chosen from what the tenant holds: a sample of the property's values (the
first page of the read being split) weighs the atoms; the heaviest is split by the next
character until none outweighs its share, then the atoms are packed into the wanted number of
partitions, small ones together. A weight is a sample count plus one, so a prefix the sample
never saw (a sample in name order shows few first letters) still gets a partition of its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Never a prefix character: Exchange's -like wildcard and what a filter parser may read as one.
WILDCARDS = frozenset("*?[]")
# Bounds on one plan: atoms in all (filter length) and how deep a prefix goes.
MAX_ATOMS = 96
MAX_PREFIX = 6
# The characters UPNs commonly start with (and continue with): how the whole set is first
# split, and how any prefix is split when the sample says nothing.
COMMON = "abcdefghijklmnopqrstuvwxyz0123456789"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Atom:
    """Objects whose value starts with `prefix` (rest_of None), or start with it and with none
    of `prefix + c` for c in `rest_of`."""

    prefix: str
    rest_of: tuple[str, ...] | None = None

    def clause(self, prop: str) -> str:
        like = f"{prop} -like {_quoted(self.prefix + '*')}"
        if self.rest_of is None:
            return like
        excluded = " -or ".join(
            f"{prop} -like {_quoted(self.prefix + c + '*')}" for c in self.rest_of
        )
        if not self.prefix:
            return f"-not ({excluded})"
        return f"({like} -and -not ({excluded}))"

    def holds(self, value: str) -> bool:
        """The atom's meaning on a lowercase value, as the planner counts the sample."""
        if not value.startswith(self.prefix):
            return False
        if self.rest_of is None:
            return True
        return value[len(self.prefix) : len(self.prefix) + 1] not in self.rest_of

    def expand(self, sample: Sequence[str], *, alphabet: str = "") -> list[Atom] | None:
        """Split a prefix atom by the next character seen in `sample`, and every character of
        `alphabet` (its rest included); None when it cannot be split (a rest, too deep, or no
        character to split by)."""
        if self.rest_of is not None or len(self.prefix) >= MAX_PREFIX:
            return None
        depth = len(self.prefix)
        seen = {
            v[depth]
            for v in sample
            if len(v) > depth and v.startswith(self.prefix) and v[depth] not in WILDCARDS
        }
        chars = sorted(seen | set(alphabet))
        if not chars:
            return None
        return [Atom(self.prefix + c) for c in chars] + [Atom(self.prefix, tuple(chars))]


ROOT: tuple[Atom, ...] = (Atom(""),)  # everything; never sent as a filter (always split first)


@dataclass(frozen=True, slots=True)
class Partition:
    """Atoms read on one cursor."""

    atoms: tuple[Atom, ...]

    def filter(self, prop: str) -> str:
        return " -or ".join(atom.clause(prop) for atom in self.atoms)


def split(atoms: Iterable[Atom], ways: int, sample: Iterable[str]) -> list[Partition]:
    """`atoms` as at most `ways` partitions balanced by `sample` (lowercase values), splitting
    the heaviest prefix while it outweighs its share or there are fewer atoms than `ways`. One
    partition means the atoms could not be split: the caller reads them on one cursor.

    A sample in sorted order (a service that pages in name order) says nothing about the names
    past its last one: it is then not used, and prefixes split by the common UPN characters,
    weighed alike; the whole set then becomes one partition per common first character and
    the rest (none packed together: nothing says which are small)."""
    values = [v.lower() for v in sample]
    pieces = list(atoms)
    if len(values) > 1 and values == sorted(values):
        values = []
        if tuple(pieces) == ROOT:  # nothing says which first characters are rare: none share
            ways = max(ways, len(COMMON) + 1)
    weights = [_weight(atom, values) for atom in pieces]
    while len(pieces) < MAX_ATOMS:
        share = max(sum(weights) / ways, 2)
        found = None
        for i in sorted(range(len(pieces)), key=lambda i: (-weights[i], len(pieces[i].prefix))):
            if weights[i] <= share and len(pieces) >= ways:
                break  # none outweighs its share, and there are enough to go round
            under = [v for v in values if pieces[i].holds(v)]
            common = COMMON if (not values or not pieces[i].prefix) else ""
            expanded = pieces[i].expand(under, alphabet=common)
            if expanded is not None and len(pieces) - 1 + len(expanded) <= MAX_ATOMS:
                found = i, under, expanded
                break
        if found is None:
            break
        i, under, expanded = found
        pieces[i : i + 1] = expanded
        weights[i : i + 1] = [_weight(atom, under) for atom in expanded]
    if any(not atom.prefix and atom.rest_of is None for atom in pieces):
        return []  # the whole set could not be split: it cannot be sent as a filter
    return _pack(pieces, weights, ways)


def _weight(atom: Atom, values: Sequence[str]) -> int:
    return 1 + sum(1 for v in values if atom.holds(v))


def _pack(pieces: list[Atom], weights: list[int], ways: int) -> list[Partition]:
    """Heaviest first into the lightest partition; the partitions heaviest first (the order
    to read them in), each one's atoms in prefix order."""
    bins = min(ways, len(pieces))
    heap = [(0, b) for b in range(bins)]
    members: list[list[Atom]] = [[] for _ in range(bins)]
    for i in sorted(range(len(pieces)), key=lambda i: (-weights[i], pieces[i].prefix)):
        load, b = heapq.heappop(heap)
        members[b].append(pieces[i])
        heapq.heappush(heap, (load + weights[i], b))
    loads = {b: load for load, b in heap}
    order = sorted((b for b in range(bins) if members[b]), key=lambda b: (-loads[b], b))
    return [
        Partition(tuple(sorted(members[b], key=lambda a: (a.prefix, a.rest_of is not None))))
        for b in order
    ]
