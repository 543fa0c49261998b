from __future__ import annotations

import re

from reconciler.model import Plan, UserChange
from reconciler.render import render_plan
from reconciler.render.markdown import MARKDOWN_BUDGET, MARKER, TRUNCATED
from tests.render.scenarios import HOSTILE_POLICY, HOSTILE_UPN, contoso_plan, hostile_plan


def huge_plan(groups: int, per_group: int, warnings: int = 400) -> Plan:
    changes = tuple(
        UserChange(
            "user_assign",
            f"user{g:04}-{i:03}-with-a-long-name@contoso.example.com",
            f"id-{g}-{i}",
            f"Old policy {g}",
            "Block",
            f"rule-{g}",
        )
        for g in range(groups)
        for i in range(per_group)
    )
    return Plan(
        tenant="contoso.onmicrosoft.com",
        fingerprint="sha256:" + "a" * 64,
        changes=changes,
        warnings=tuple(f"warning number {i} " + "x" * 200 for i in range(warnings)),
    )


def balanced(markdown: str) -> None:
    assert markdown.count("<details") == markdown.count("</details>")
    fences = [line for line in markdown.splitlines() if re.fullmatch(r"`{3,}(diff)?", line)]
    assert len(fences) % 2 == 0


def test_marker_first_and_summary_table_before_details() -> None:
    md = render_plan(contoso_plan(), "markdown")
    assert md.splitlines()[0] == MARKER
    assert md.index("| **Total** | **10** |") < md.index("<details")
    balanced(md)


def test_a_plan_over_budget_is_cut_with_a_pointer_to_the_json_plan() -> None:
    plan = huge_plan(groups=300, per_group=40)
    md = render_plan(plan, "markdown", show_users=None)
    assert len(md) <= MARKDOWN_BUDGET
    assert TRUNCATED in md
    assert "| **Total** | **12,000** |" in md  # the summary survives the cut
    assert "... cut:" in md
    assert "more warnings (see the JSON plan)" in md
    assert md.rstrip().endswith(f"`{plan.fingerprint}`") is False  # the note follows it
    assert f"Fingerprint: `{plan.fingerprint}`" in md
    balanced(md)


def test_a_plan_within_budget_is_not_cut() -> None:
    md = render_plan(huge_plan(groups=3, per_group=5, warnings=3), "markdown", show_users=None)
    assert TRUNCATED not in md
    assert md.count("@contoso.example.com") == 15


def test_hostile_names_cannot_break_out() -> None:
    md = render_plan(hostile_plan(), "markdown")
    balanced(md)
    # no raw HTML outside code fences, no forged plan line, no mention
    outside = re.sub(r"(?ms)^(`{3,})diff$.*?^\1$", "", md)
    assert "<script>" not in outside and "<img" not in outside and "<b>" not in outside
    assert "\\@admins" in outside
    assert not any(line.startswith('+ create policy "fake"') for line in md.splitlines())
    assert "\u202e" not in md and HOSTILE_POLICY not in md and HOSTILE_UPN not in outside
    # the fence around a name with ``` in it is longer than ```
    assert "````diff" in md


def test_mask_users_hides_upns_in_lists_and_warnings() -> None:
    md = render_plan(hostile_plan(), "markdown", mask_users=True)
    assert "***@contoso.com" in md
    assert "admins" not in md
