"""The partitions of a partitioned read (reconciler/tenant/exo/partitions.py): whatever the
sample, the partitions are disjoint and together select every value, as the emulator's OPATH
parser reads their filters, and as the planner counts them."""

from __future__ import annotations

import random
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.emulator.filters import (
    PrefixIndex,
    compile_filter,
    compile_indexed,
    field_getters,
)
from reconciler.tenant.exo.partitions import COMMON, MAX_ATOMS, ROOT, Atom, Partition, split

GETTERS = field_getters(["UserPrincipalName"])
# UPN-ish values, and the odd ones: uppercase, accents, quotes, wildcards, empty.
VALUES = st.text(
    alphabet=string.ascii_letters + string.digits + "._-'*?[]éßİ@", min_size=0, max_size=12
)


def _owners(parts: list[Partition], value: str) -> list[int]:
    """Which partitions select `value`, as the emulator evaluates their filters."""
    record = {"UserPrincipalName": value}
    return [
        i
        for i, part in enumerate(parts)
        if compile_filter(part.filter("UserPrincipalName"), GETTERS)(record)
    ]


@settings(max_examples=60, deadline=None)
@given(
    sample=st.lists(VALUES, max_size=60),
    values=st.lists(VALUES, min_size=1, max_size=40),
    ways=st.integers(min_value=2, max_value=16),
)
def test_every_value_is_in_exactly_one_partition(
    sample: list[str], values: list[str], ways: int
) -> None:
    parts = split(ROOT, ways, sample)
    # A sample in name order says nothing: then one partition per common first character.
    assert 1 < len(parts) <= max(ways, len(COMMON) + 1)
    assert sum(len(p.atoms) for p in parts) <= MAX_ATOMS
    for value in values:
        assert len(_owners(parts, value)) == 1, value
        # and the planner's reading of an atom agrees with the server's on lowercase values
        lowered = value.lower()
        holding = [a for p in parts for a in p.atoms if a.holds(lowered)]
        assert len(holding) == 1, value


@settings(max_examples=30, deadline=None)
@given(sample=st.lists(VALUES, min_size=1, max_size=40), values=st.lists(VALUES, max_size=30))
def test_a_partition_split_again_covers_exactly_its_own_values(
    sample: list[str], values: list[str]
) -> None:
    parts = split(ROOT, 4, sample)
    parent = parts[0]
    pieces = split(parent.atoms, 4, sample)
    parent_filter = compile_filter(parent.filter("UserPrincipalName"), GETTERS)
    for value in values:
        record = {"UserPrincipalName": value}
        inside = [compile_filter(p.filter("UserPrincipalName"), GETTERS)(record) for p in pieces]
        assert sum(inside) == (1 if parent_filter(record) else 0), value


def test_the_filters_are_answered_from_the_emulators_prefix_index() -> None:
    for part in split(ROOT, 8, ["alice@x", "bob@x", "carol@x"]):
        _, plan = compile_indexed(part.filter("UserPrincipalName"), GETTERS)
        assert plan is not None, part.filter("UserPrincipalName")


@settings(max_examples=40, deadline=None)
@given(sample=st.lists(VALUES, max_size=40), names=st.lists(VALUES, max_size=40))
def test_the_emulators_name_index_answers_as_its_scan(sample: list[str], names: list[str]) -> None:
    # Get-CASMailbox partitions filter on Name: the emulator answers them from a sorted index
    # by Name, which must select exactly what testing every record selects, in its order.
    records = [{"Name": name, "n": i} for i, name in enumerate(names)]
    index = PrefixIndex(records, lambda r: r["Name"])
    getters = field_getters(["Name"])
    for part in split(ROOT, 8, sample):
        predicate, plan = compile_indexed(part.filter("Name"), getters, "Name")
        assert plan is not None
        assert index.select(plan(index)) == [r for r in records if predicate(r)]


def test_a_random_sample_balances_the_partitions() -> None:
    rng = random.Random(5)
    first = "aaabcdeeefghijjjjkllmmmmnoprrssssttvwz"  # uneven, like first names
    tenant = [
        rng.choice(first) + "".join(rng.choices(string.ascii_lowercase, k=6)) + "@contoso.com"
        for _ in range(20_000)
    ]
    sample = rng.sample(tenant, 1000)
    parts = split(ROOT, 8, sample)
    sizes = [sum(1 for upn in tenant if any(a.holds(upn) for a in part.atoms)) for part in parts]
    assert sum(sizes) == len(tenant)
    assert max(sizes) < 1.5 * len(tenant) / 8, sizes
    weights = [sum(1 for upn in sample if any(a.holds(upn) for a in p.atoms)) for p in parts]
    assert weights == sorted(weights, reverse=True)  # read heaviest first


def test_a_sorted_sample_is_not_trusted_and_common_characters_split_the_root() -> None:
    sample = sorted(f"a{i:04d}@contoso.com" for i in range(1000))  # a service paging in order
    parts = split(ROOT, 8, sample)
    atoms = {a.prefix for p in parts for a in p.atoms}
    assert set(COMMON) <= atoms  # not 'a' split a thousand ways while 'b'..'z' share one
    # and nothing says which are small, so none share a cursor: one partition each, and the rest
    assert sorted(len(p.atoms) for p in parts) == [1] * (len(COMMON) + 1)


def test_a_rest_atom_reads_as_its_prefix_without_its_children() -> None:
    atom = Atom("ab", ("c", "d"))
    assert atom.clause("P") == "(P -like 'ab*' -and -not (P -like 'abc*' -or P -like 'abd*'))"
    assert Atom("", ("a",)).clause("P") == "-not (P -like 'a*')"
    assert Atom("o'b").clause("P") == "P -like 'o''b*'"
    assert atom.holds("abx") and atom.holds("ab") and not atom.holds("abc")
    assert Atom("abcdef").expand(["abcdefg"]) is None  # deep enough
    assert atom.expand(["abz"]) is None  # a rest is never split
