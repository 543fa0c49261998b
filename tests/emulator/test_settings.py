"""Settings (reconciler/emulator/settings.py): validation, run-time changes, documentation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.emulator.settings import (
    STARTUP_ONLY,
    EmulatorSettings,
    apply_runtime_changes,
    runtime_setting_names,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "emulator.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(EmulatorSettings) if f"`{f.name}`" not in text]
    assert missing == []


def test_runtime_names_exclude_startup_settings() -> None:
    names = runtime_setting_names()
    assert not names & STARTUP_ONLY
    assert {"error_503_rate", "remove_referenced", "revoked_apps", "one_shot"} <= names


def test_apply_runtime_changes_coerces_and_validates() -> None:
    base = EmulatorSettings()
    changed = apply_runtime_changes(base, {"revoked_apps": ["writer"], "one_shot": ("error_503",)})
    assert changed.revoked_apps == ("writer",)
    assert changed.one_shot == ["error_503"]
    assert base.revoked_apps == ()  # the original is untouched
    with pytest.raises(ValueError, match="unknown one-shot fault 'meteor'"):
        apply_runtime_changes(base, {"one_shot": ["meteor"]})
    with pytest.raises(ValueError, match="start-up-only setting\\(s\\): port, users"):
        apply_runtime_changes(base, {"users": 1, "port": 2})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("write_response", "loud", "write_response must be one of empty, absent, null, no_content"),
        ("forbidden_body", "zeros", "forbidden_body must be one of nul_gzip, empty"),
        ("users", -1, "users must be >= 0"),
        ("default_page_size", 1001, "default_page_size must be between 1 and 1000"),
    ],
)
def test_validate_messages(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        dataclasses.replace(EmulatorSettings(), **{field: value}).validate()
