"""Golden files for the three renderers: tests/fixtures/render/<scenario>[-variant].{txt,md,json}.

Regenerate after a deliberate change with `UPDATE_GOLDEN=1 pytest tests/render/test_golden.py`,
then read the diff: the output must stay pleasant to read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.render import render_plan
from tests.render.scenarios import SCENARIOS

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "render"
EXTENSIONS = {"text": "txt", "markdown": "md", "json": "json"}

CASES = [(scenario, fmt, "", {}) for scenario in SCENARIOS for fmt in EXTENSIONS]
CASES += [
    ("contoso", "text", "-masked", {"mask_users": True}),
    ("contoso", "markdown", "-masked", {"mask_users": True}),
    ("guarded", "text", "-all-users", {"show_users": None}),
    ("guarded", "text", "-color", {"color": True}),
]


@pytest.mark.parametrize(
    ("scenario", "fmt", "variant", "options"),
    CASES,
    ids=[f"{s}{v}.{EXTENSIONS[f]}" for s, f, v, _ in CASES],
)
def test_golden(scenario: str, fmt: str, variant: str, options: dict) -> None:
    rendered = render_plan(SCENARIOS[scenario](), fmt, **options)
    path = GOLDEN / f"{scenario}{variant}.{EXTENSIONS[fmt]}"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
    assert rendered == path.read_text(encoding="utf-8")
