"""Rendering plans: one view-model; text, markdown and json.

- `render_plan(plan, fmt, *, color=False, show_users=20, mask_users=False)`: fmt is
  text | markdown | json (`show_users=None` lists every user);
- `plan_to_json(plan)` / `plan_from_json(text)`: the format_version 1 document and its exact
  inverse (apply reads saved plans with it).
"""

from __future__ import annotations

from reconciler.model import Plan
from reconciler.render.jsonplan import plan_from_json, plan_to_json
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from reconciler.render.view import build_view

FORMATS: tuple[str, ...] = ("text", "markdown", "json")


def render_plan(
    plan: Plan,
    fmt: str,
    *,
    color: bool = False,
    show_users: int | None = 20,
    mask_users: bool = False,
) -> str:
    """The plan as `fmt`. JSON is the machine plan: it is never masked or coloured."""
    if fmt == "json":
        if mask_users:
            raise ValueError("the JSON plan is never masked: it is the plan apply executes")
        return plan_to_json(plan)
    view = build_view(plan, mask_users=mask_users)
    if fmt == "text":
        return render_text(view, color=color, show_users=show_users)
    if fmt == "markdown":
        return render_markdown(view, show_users=show_users)
    raise ValueError(f"unknown plan format {fmt!r} (expected one of {', '.join(FORMATS)})")


__all__ = ["FORMATS", "plan_from_json", "plan_to_json", "render_plan"]
