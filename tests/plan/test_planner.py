"""make_plan: policies, default, users, ordering, held deletes, guards, warnings, weakens."""

from __future__ import annotations

import pytest

from reconciler.errors import PlanError
from reconciler.model import (
    DefaultChange,
    FieldChange,
    Limit,
    MatchSpec,
    PolicyCreate,
    PolicyDelete,
    PolicyUpdate,
    Safety,
    UserChange,
)
from reconciler.plan import make_plan
from tests.plan.scenarios import ALL, contoso, desired, policy, rule, snapshot, spec, user


def kinds(plan) -> list[str]:
    return [c.kind for c in plan.changes]


def user_changes(plan) -> list[tuple[str, str | None, str | None, str, bool]]:
    return [
        (c.user, c.before, c.after, c.rule, c.weakens)
        for c in plan.changes
        if isinstance(c, UserChange)
    ]


# --------------------------------------------------------------------------- policies


def test_creates_missing_policies_and_updates_only_differing_switches() -> None:
    state = desired([spec("Block"), spec("Relay", "smtp"), spec("Same", "pop")])
    tenant = snapshot([policy("Block", "imap", "smtp"), policy("Same", "pop")], [])
    plan = make_plan(state, tenant)
    assert plan.changes == (
        PolicyCreate(policy="Relay", after=frozenset({"smtp"})),
        PolicyUpdate(
            policy="Block",
            fields=(FieldChange("imap", True, False), FieldChange("smtp", True, False)),
        ),
    )


def test_a_switch_the_file_does_not_mention_is_still_drift() -> None:
    # allow: [] says "all 12 blocked": an admin-center edit turning one on is drift.
    plan = make_plan(desired([spec("Block")]), snapshot([policy("Block", "web_services")], []))
    assert plan.changes == (PolicyUpdate("Block", (FieldChange("web_services", True, False),)),)


def test_turning_a_switch_on_weakens() -> None:
    plan = make_plan(
        desired([spec("P", "smtp", "pop")]), snapshot([policy("P", "pop", "imap")], [])
    )
    (change,) = plan.changes
    assert isinstance(change, PolicyUpdate)
    assert change.fields == (FieldChange("imap", True, False), FieldChange("smtp", False, True))
    assert change.weakens is True


def test_policy_names_compare_case_insensitively() -> None:
    state = desired([spec("block basic auth")], [rule("all", "block basic auth", ALL)])
    tenant = snapshot([policy("Block Basic Auth")], [user("a@x.com", "BLOCK BASIC AUTH")])
    assert make_plan(state, tenant).changes == ()


def test_deletes_listed_policies_that_exist_and_ignores_absent_ones() -> None:
    state = desired([spec("Keep")], remove=["legacy", "Never Existed"])
    tenant = snapshot([policy("Keep"), policy("Legacy"), policy("Other")], [])
    assert make_plan(state, tenant).changes == (PolicyDelete("Legacy"),)


def test_prune_deletes_every_undeclared_policy() -> None:
    state = desired([spec("Keep")], prune=True)
    tenant = snapshot([policy("b-old"), policy("KEEP"), policy("A-old")], [])
    assert make_plan(state, tenant).changes == (PolicyDelete("A-old"), PolicyDelete("b-old"))


def test_a_policy_both_declared_and_removed_is_an_error() -> None:
    with pytest.raises(PlanError) as err:
        make_plan(desired([spec("P")], remove=["p"]), snapshot([policy("P")], []))
    assert str(err.value) == (
        'policy "p" is both declared under policies and listed in remove_policies; '
        "keep it in one place"
    )


# --------------------------------------------------------------------------- default


def test_default_left_alone_when_not_managed() -> None:
    plan = make_plan(desired([spec("A")]), snapshot([policy("A"), policy("B")], [], default="B"))
    assert plan.changes == ()


def test_default_set_uses_the_declared_spelling() -> None:
    state = desired([spec("Block")], default="block")
    tenant = snapshot([policy("Block")], [user("a@x.com"), user("b@x.com", "Block")])
    assert make_plan(state, tenant).changes == (DefaultChange(None, "Block", affected_users=1),)


def test_default_already_right_case_insensitively_is_no_change() -> None:
    state = desired([spec("Block")], default="Block")
    assert make_plan(state, snapshot([policy("Block")], [], default="BLOCK")).changes == ()


def test_default_null_clears_it_weakens_and_is_guarded() -> None:
    state = desired([spec("Block")], manage_default=True, default=None)
    tenant = snapshot(
        [policy("Block")], [user("a@x.com"), user("b@x.com", "Block")], default="Block"
    )
    plan = make_plan(state, tenant)
    assert plan.changes == (DefaultChange("Block", None, affected_users=1, weakens=True),)
    assert [(g.name, g.message) for g in plan.guards] == [
        (
            "default_cleared",
            'this plan clears the organization default policy "Block" (1 user would rely on '
            "no default); apply with --force to confirm",
        )
    ]


def test_default_to_a_policy_that_allows_more_weakens() -> None:
    state = desired([spec("Strict"), spec("Relay", "smtp")], default="Relay")
    plan = make_plan(
        state, snapshot([policy("Strict"), policy("Relay", "smtp")], [], default="Strict")
    )
    assert plan.changes == (DefaultChange("Strict", "Relay", affected_users=0, weakens=True),)
    # A default that allows more is guarded like clearing it (issue 13 item 9).
    assert [(g.name, g.message) for g in plan.guards] == [
        (
            "default_weakened",
            'this plan changes the organization default from "Strict" to "Relay", which allows '
            "Basic auth for more (0 users rely on it); apply with --force to confirm",
        )
    ]


def test_users_relying_on_a_moving_default_and_replace_holders_count_as_user_changes() -> None:
    state = desired(
        [spec("Strict"), spec("New")],
        default="New",
        safety=Safety(max_user_changes=Limit(2)),
    )
    users = [user(f"u{i}@x.com") for i in range(3)]  # no direct policy: they rely on it
    plan = make_plan(state, snapshot([policy("Strict"), policy("New")], users, default="Strict"))
    (guard,) = plan.guards
    assert guard.name == "max_user_changes" and guard.count == 3
    assert guard.message.startswith("3 user changes (with 3 users the default change moves)")


def test_default_affected_counts_users_relying_on_it_after_the_user_changes() -> None:
    # a: no direct policy, stays so -> effective changes (None -> Block): counted.
    # b: direct Block, cleared by a rule -> relies on the new default Block: same, not counted.
    # c: direct Old, cleared -> Old -> Block: counted.
    # d: direct Block, rule keeps it -> not relying on the default.
    state = desired(
        [spec("Block"), spec("Old")],
        [
            rule("clear", None, MatchSpec(users=("b@x.com", "c@x.com"))),
            rule("keep", "Block", MatchSpec(users=("d@x.com",))),
        ],
        default="Block",
    )
    tenant = snapshot(
        [policy("Block"), policy("Old")],
        [
            user("a@x.com"),
            user("b@x.com", "Block"),
            user("c@x.com", "Old"),
            user("d@x.com", "Block"),
        ],
    )
    plan = make_plan(state, tenant)
    assert plan.changes[0] == DefaultChange(None, "Block", affected_users=2)


# --------------------------------------------------------------------------- users


def test_users_get_assign_and_clear_and_users_already_right_get_nothing() -> None:
    state = desired(
        [spec("Block")],
        [
            rule("break-glass", None, MatchSpec(users=("bg@x.com",))),
            rule("everyone", "Block", ALL),
        ],
        default="Block",
    )
    tenant = snapshot(
        [policy("Block")],
        [
            user("ok@x.com", "Block"),
            user("new@x.com"),
            user("bg@x.com", "Block"),
            user("bg2@x.com"),
        ],
        default="Block",
    )
    plan = make_plan(state, tenant)
    assert user_changes(plan) == [
        ("bg2@x.com", None, "Block", "everyone", False),
        ("bg@x.com", "Block", None, "break-glass", False),
        ("new@x.com", None, "Block", "everyone", False),
    ]
    assert [c.kind for c in plan.changes] == ["user_assign", "user_clear", "user_assign"]


def test_unmatched_ignore_leaves_users_alone_and_clear_clears_them() -> None:
    rules = [rule("sales", "Block", MatchSpec(department=("Sales",)))]
    tenant = snapshot(
        [policy("Block"), policy("Old")],
        [user("s@x.com", department="Sales"), user("o@x.com", "Old"), user("n@x.com")],
    )
    ignore = make_plan(desired([spec("Block")], rules), tenant)
    assert user_changes(ignore) == [("s@x.com", None, "Block", "sales", False)]
    clear = make_plan(desired([spec("Block")], rules, unmatched="clear"), tenant)
    assert user_changes(clear) == [
        ("o@x.com", "Old", None, "(unmatched)", True),  # Old blocks all; no policy allows all
        ("s@x.com", None, "Block", "sales", False),
    ]
    assert (
        "2 users match no rule and get no direct policy (assignments.unmatched: clear): "
        "n@x.com, o@x.com" in clear.warnings
    )


def test_user_weakens_compares_effective_policy_before_and_after() -> None:
    state = desired(
        [spec("Strict"), spec("Relay", "smtp")],
        [
            rule("relay", "Relay", MatchSpec(department=("relay",))),
            rule("strict", "Strict", MatchSpec(department=("strict",))),
        ],
    )
    tenant = snapshot(
        [policy("Strict"), policy("Relay", "smtp"), policy("Drifted", "smtp", "pop")],
        [
            user("from-strict@x.com", "Strict", department="relay"),  # gains smtp: weakens
            user("from-nothing@x.com", department="relay"),  # no policy allowed all: not weaker
            user("from-drifted@x.com", "Drifted", department="relay"),  # smtp+pop -> smtp
            user("to-strict@x.com", "Relay", department="strict"),
            user("dangling@x.com", "Gone", department="relay"),  # unknown: counted as weaker
        ],
        default=None,
    )
    plan = make_plan(state, tenant)
    assert {c.user: c.weakens for c in plan.changes if isinstance(c, UserChange)} == {
        "dangling@x.com": True,
        "from-drifted@x.com": False,
        "from-nothing@x.com": False,
        "from-strict@x.com": True,
        "to-strict@x.com": False,
    }
    assert (
        '1 user holds policy "Gone", which does not exist in the tenant: dangling@x.com'
        in plan.warnings
    )


def test_clearing_a_user_onto_a_default_that_allows_more_weakens() -> None:
    state = desired([spec("Strict")], [rule("bg", None, MatchSpec(users=("a@x.com",)))])
    tenant = snapshot(
        [policy("Strict"), policy("Open", "smtp")], [user("a@x.com", "Strict")], default="Open"
    )
    assert user_changes(make_plan(state, tenant)) == [("a@x.com", "Strict", None, "bg", True)]


def test_policy_update_counts_users_whose_effective_policy_it_is_after_the_plan() -> None:
    state = desired(
        [spec("Block"), spec("Relay", "smtp")],
        [rule("relay", "Relay", MatchSpec(users=("r@x.com",)))],
    )
    tenant = snapshot(
        [policy("Block", "imap"), policy("Relay")],
        [user("r@x.com", "Block"), user("b@x.com", "Block"), user("d@x.com")],
        default="Block",
    )
    plan = make_plan(state, tenant)
    updates = {c.policy: c.affected_users for c in plan.changes if isinstance(c, PolicyUpdate)}
    assert updates == {"Block": 2, "Relay": 1}


# --------------------------------------------------------------------------- ordering


def test_execution_order_creates_updates_default_users_deletes() -> None:
    state, tenant = contoso()
    plan = make_plan(state, tenant)
    assert kinds(plan) == [
        "policy_create",
        "policy_update",
        "default_change",
        "user_assign",
        "user_clear",
        "user_assign",
        "user_assign",
        "user_assign",
        "user_assign",
        "policy_delete",
    ]
    # user changes are in UPN order (casefolded), whatever order the tenant listed them in
    assert [c.user for c in plan.changes if isinstance(c, UserChange)] == [
        "ann@contoso.com",
        "BreakGlass@contoso.com",
        "scanner-01@contoso.com",
        "scanner-02@contoso.com",
        "scanner-03@contoso.com",
        "scanner-lobby@contoso.com",
    ]


def test_deleting_a_policy_users_would_still_hold_is_an_error_naming_them() -> None:
    users = [user(f"u{i:02}@x.com", "Legacy") for i in range(12)]
    users.append(user("moved@x.com", "Legacy", department="IT"))
    state = desired(
        [spec("Block")],
        [rule("it", "Block", MatchSpec(department=("IT",)))],
        remove=["Legacy"],
    )
    with pytest.raises(PlanError) as err:
        make_plan(state, snapshot([policy("Block"), policy("Legacy")], users))
    assert str(err.value) == (
        'cannot delete policy "Legacy": 12 users would still hold it after this plan (no rule '
        "moves them): u00@x.com, u01@x.com, u02@x.com, u03@x.com, u04@x.com, u05@x.com, "
        "u06@x.com, u07@x.com, u08@x.com, u09@x.com and 2 more"
    )


def test_deleting_a_held_policy_is_fine_when_the_rules_move_every_holder() -> None:
    state = desired([spec("Block")], [rule("all", "Block", ALL)], remove=["Legacy"])
    tenant = snapshot([policy("Block"), policy("Legacy")], [user("a@x.com", "Legacy")])
    assert kinds(make_plan(state, tenant)) == ["user_assign", "policy_delete"]


def test_deleting_the_default_that_stays_the_default_is_an_error() -> None:
    state = desired([spec("Block")], remove=["Legacy"])
    tenant = snapshot([policy("Block"), policy("Legacy")], [], default="Legacy")
    with pytest.raises(PlanError) as err:
        make_plan(state, tenant)
    assert str(err.value) == (
        'cannot delete policy "Legacy": it is the organization default and stays so (set '
        "default_policy to another policy)"
    )
    moved = desired([spec("Block")], remove=["Legacy"], default="Block")
    assert kinds(make_plan(moved, tenant)) == ["default_change", "policy_delete"]


def test_a_rule_assigning_an_unknown_policy_is_an_error() -> None:
    state = desired([spec("Block")], [rule("x", "Nope", ALL)])
    with pytest.raises(PlanError) as err:
        make_plan(state, snapshot([policy("Block")], []))
    assert str(err.value) == 'rule "x" assigns "Nope", which is neither declared nor in the tenant'


# --------------------------------------------------------------------------- guards


def test_max_user_changes_as_a_percentage_of_the_tenant() -> None:
    users = [user(f"u{i}@x.com") for i in range(20)] + [user(f"k{i}@x.com", "B") for i in range(80)]
    state = desired(
        [spec("B")],
        [rule("all", "B", ALL)],
        safety=Safety(max_user_changes=Limit(10, percent=True)),
    )
    plan = make_plan(state, snapshot([policy("B")], users))
    assert len(plan.changes) == 20  # the plan is complete even though it is guarded
    assert [(g.name, g.count, g.limit, g.message) for g in plan.guards] == [
        (
            "max_user_changes",
            20,
            10,
            "20 user changes exceed safety.max_user_changes 10% (10 of 100 users); review the "
            "plan, then apply with --force",
        )
    ]
    relaxed = desired(
        [spec("B")], [rule("all", "B", ALL)], safety=Safety(max_user_changes=Limit(20))
    )
    assert make_plan(relaxed, snapshot([policy("B")], users)).guards == ()


def test_max_policy_deletes() -> None:
    state = desired([spec("Keep")], prune=True, safety=Safety(max_policy_deletes=Limit(1)))
    plan = make_plan(state, snapshot([policy("Keep"), policy("A"), policy("B")], []))
    assert [(g.name, g.count, g.limit, g.message) for g in plan.guards] == [
        (
            "max_policy_deletes",
            2,
            1,
            "2 policy deletes exceed safety.max_policy_deletes 1; review the plan, then apply "
            "with --force",
        )
    ]


# --------------------------------------------------------------------------- warnings


def test_warnings_for_the_contoso_scenario() -> None:
    state, tenant = contoso()
    assert make_plan(state, tenant).warnings == ('rule "contractors" matches no user',)


def test_warnings_in_a_fixed_order() -> None:
    state = desired(
        [spec("Used"), spec("Unused"), spec("Legacy", "imap", "smtp")],
        [
            rule("everyone", "Used", ALL, MatchSpec(member_of=("Ghost Group",))),
            rule("shadowed", "Used", MatchSpec(department=("IT",))),
            rule("nobody", "Legacy", MatchSpec(department=("None",))),
        ],
    )
    tenant = snapshot([policy("Used")], [user("a@x.com", department="IT")], default="Vanished")
    assert make_plan(state, tenant).warnings == (
        'rule "shadowed" governs no user: every user it matches is taken by an earlier rule',
        'rule "nobody" matches no user',
        'group "Ghost Group" (member_of) was not found in the tenant',
        'policy "Unused" is declared but no rule assigns it and it is not the default',
        'policy "Legacy" allows imap: Basic auth for these was switched off service-wide and '
        "allowing it no longer has any effect in Exchange Online (only smtp still does)",
        'the organization default "Vanished" does not exist in the tenant',
    )


def test_warns_about_users_left_with_no_policy_at_all() -> None:
    state = desired([spec("B")], [rule("bg", None, MatchSpec(users=("a@x.com",)))])
    plan = make_plan(state, snapshot([policy("B")], [user("a@x.com", "B"), user("c@x.com")]))
    assert plan.warnings[-1] == (
        "2 users will have no authentication policy after this plan (no direct policy and no "
        "organization default): no policy blocks Basic auth for them"
    )


def test_errors_stay_one_line_whatever_the_tenant_names_hold() -> None:
    state = desired([spec("Block")], remove=["Bad\nName"])
    tenant = snapshot(
        [policy("Block"), policy("Bad\nName")], [user("evil\u202e@x.com", "bad\nname")]
    )
    with pytest.raises(PlanError) as err:
        make_plan(state, tenant)
    assert str(err.value) == (
        'cannot delete policy "Bad\\x0aName": 1 user would still hold it after this plan (no '
        "rule moves them): evil\\u202e@x.com"
    )


def test_a_dangling_link_is_rewritten_even_to_a_policy_of_the_same_name() -> None:
    # "Gone" was deleted and is declared again: the user's old link does not point at the new
    # object, so the rule's assignment is written.
    state = desired([spec("Gone")], [rule("all", "Gone", ALL)])
    tenant = snapshot([], [user("a@x.com", "Gone"), user("b@x.com")])
    plan = make_plan(state, tenant)
    assert kinds(plan) == ["policy_create", "user_assign", "user_assign"]
    assert user_changes(plan)[0] == ("a@x.com", "Gone", "Gone", "all", False)
    ignored = make_plan(desired([spec("Gone")]), tenant)  # no rule: left alone
    assert kinds(ignored) == ["policy_create"]


def test_a_replace_counts_the_holders_it_re_points() -> None:
    from reconciler.model import PolicyReplace
    from reconciler.plan.planner import guards_of

    state = desired([spec("Block")], safety=Safety(max_user_changes=Limit(1)))
    tenant = snapshot([policy("Block")], [user("a@x.com", "Block"), user("b@x.com", "Block")])
    replace = PolicyReplace("Block", (), frozenset(), holders=("id-a@x.com", "id-b@x.com"))
    (guard,) = guards_of(state, tenant, [replace], 0)
    assert (guard.name, guard.count, guard.limit) == ("max_user_changes", 2, 1)


def test_a_declared_name_that_looks_like_another_tenant_policy_is_named() -> None:
    # Cyrillic о in the declared name: Exchange would create a second policy beside the first.
    state = desired([spec("Bl\u043eck Basic Auth")])
    plan = make_plan(state, snapshot([policy("Block Basic Auth")], []))
    assert (
        'policy "Bl\u043eck Basic Auth" looks like the tenant\'s "Block Basic Auth" but is a '
        "different name (differs in U+043E): the plan treats them as two policies; spell it as "
        "the tenant does if it is meant to be the same"
    ) in plan.warnings


def test_a_holding_policy_left_by_a_killed_replace_is_finished_first() -> None:
    from reconciler.model import ReplaceResume, holding_name

    hold = holding_name("Block")
    state = desired([spec("Block")], [rule("everyone", "Block", ALL)], default="Block")
    # Killed after the remove: Block is gone, its users and the default wait on the holding one.
    tenant = snapshot(
        [policy(hold)],
        [user("a@x.com", hold), user("b@x.com", hold), user("c@x.com", None)],
        default=hold,
    )
    plan = make_plan(state, tenant)
    assert kinds(plan)[:2] == ["policy_create", "replace_resume"]
    resume = plan.changes[1]
    assert resume == ReplaceResume("Block", hold, ("id-a@x.com", "id-b@x.com"), default=True)
    # a and b go back with the resume; only c (no direct policy) gets a user change.
    assert [c.user for c in plan.changes if isinstance(c, UserChange)] == ["c@x.com"]
    assert plan.warnings[0] == (
        f'an earlier replace of policy "Block" did not finish: "{hold}" holds 2 users and the '
        "organization default for it; apply moves them back and removes it before anything else"
    )
    # A holding policy whose policy is known nowhere is an error, not a guess.
    orphan = snapshot([policy(holding_name("Gone"))], [])
    with pytest.raises(PlanError, match="the holding policy of a replace that did not finish"):
        make_plan(desired([spec("Block")]), orphan)
