from __future__ import annotations

from reconciler.model import MatchSpec, SnapshotNeeds
from reconciler.plan import snapshot_needs
from tests.plan.scenarios import ALL, contoso, desired, rule, spec


def test_needs_collects_attributes_and_groups_from_match_and_except() -> None:
    state = desired(
        [spec("A")],
        [
            rule("r1", "A", MatchSpec(city=("Oslo",), member_of=("SMTP Exceptions",))),
            rule("r2", "A", ALL, MatchSpec(title=("CEO",), member_of=("smtp exceptions", "Devs"))),
            rule("r3", "A", MatchSpec(upn=("x*",), recipient_type=("UserMailbox",), domain=("x",))),
        ],
    )
    assert snapshot_needs(state) == SnapshotNeeds(
        attributes=frozenset({"city", "title"}),
        groups=frozenset({"SMTP Exceptions", "Devs"}),
    )


def test_contoso_needs() -> None:
    state, _ = contoso()
    assert snapshot_needs(state) == SnapshotNeeds(
        attributes=frozenset({"department"}), groups=frozenset({"SMTP Exceptions"})
    )
