"""Fixtures of the reliability suite: one emulator per test (faults never leak between cases),
the connection in the environment for in-process CLI runs, and the EVERY_KIND config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from tests.reliability.harness import write_config

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture
def emu(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A fresh emulator; `@pytest.mark.parametrize("emu", [N], indirect=True)` sets its users."""
    users = getattr(request, "param", 300)
    settings = EmulatorSettings(
        users=users, seed=7, state_dir=tmp_path / "emu", save_on_exit=False, fault_seed=5
    )
    with Emulator(settings) as emulator:
        yield emulator


@pytest.fixture
def connected(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """`emu`, with its writer's connection as the only one in os.environ (for cli.main), and
    REQUESTS_CA_BUNDLE set as on the CI machines (it must never replace our trust)."""
    import os

    for key in list(os.environ):
        if key.startswith(("AZURE_", "AUTHPOLICY_")):
            monkeypatch.delenv(key)
    for key, value in emu.connection_env("writer").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    return emu


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """policies.yaml with every change kind (tests/reliability/harness.py EVERY_KIND)."""
    return write_config(tmp_path)
