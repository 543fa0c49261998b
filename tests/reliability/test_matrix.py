"""plan -> apply -> plan under every value of the unverified behaviours (issue: survive the real
service). One setting at a time on top of the pessimistic defaults, then the pairs that interact
(nextLink style x cursor affinity x redirect; cloud x nextLink style), on a tenant of 2,100
users; every run's writes are checked one to one against its plan.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli
from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.emulator.settings import runtime_setting_names
from reconciler.model import UserChange
from tests.reliability.conftest import SYSTEM_BUNDLE
from tests.reliability.harness import (
    assert_converged_within_plan,
    plan_now,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

USERS = 2100
STYLES = ("echo", "guid", "domain", "backend_host")
ONE_AT_A_TIME: list[dict[str, Any]] = [
    {},  # the pessimistic defaults themselves
    {"missing_identity_returns_all": False},
    *({"next_link_style": s} for s in STYLES if s != "backend_host"),
    {"redirect_to_backend": False},
    {"batch_member_auth": "ignored"},
    *({"policy_reference_format": f} for f in ("name", "dn", "guid", "object")),
    {"cursor_affinity": "lenient"},
    {"set_user_refuses": ()},
    {"smtp_default_off": "org_flag"},  # Microsoft's default-off shown as the org switch
]
TRIPLES = [
    {"next_link_style": s, "cursor_affinity": c, "redirect_to_backend": r}
    for s, c, r in itertools.product(STYLES, ("strict", "lenient"), (True, False))
]
CLOUDS = ("commercial", "gcc-high", "dod", "china")


def _label(settings: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Emulator]]:
    """One emulator per cloud (the cloud is a start-up setting), each restored per case."""
    running: dict[str, Emulator] = {}
    try:
        for cloud in CLOUDS:
            settings = EmulatorSettings(
                users=USERS,
                seed=7,
                state_dir=tmp_path_factory.mktemp(f"emu-{cloud}"),
                save_on_exit=False,
                fault_seed=5,
                cloud=cloud,
            )
            running[cloud] = Emulator(settings).start()
        yield running
    finally:
        for emu in running.values():
            emu.stop()


def _round_trip(
    emu: Emulator,
    settings: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    defaults = dataclasses.asdict(EmulatorSettings())
    emu.set_faults(**{k: defaults[k] for k in runtime_setting_names()})
    emu.reset_state()
    emu.set_faults(**settings)
    for key in list(os.environ):
        if key.startswith(("AZURE_", "AUTHPOLICY_")):
            monkeypatch.delenv(key)
    env = emu.connection_env("writer")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    config = write_config(tmp_path)
    before = emu.dump_state()
    plan = plan_now(env, config)
    user_changes = [c for c in plan.changes if isinstance(c, UserChange)]
    assert len(user_changes) > 1500, _label(settings)
    emu.reset_stats()
    capsys.readouterr()
    code = cli.main(
        ["apply", "-c", str(config), "--auto-approve", "--audit-log", str(tmp_path / "a")]
    )
    out, err = capsys.readouterr()
    assert code == 0, (_label(settings), out[-2000:], err[-2000:])
    assert f"Apply complete: {len(plan.changes)} applied, 0 failed" in out
    # Exactly the planned writes, each once, the tenant moved in exactly those objects, and a
    # fresh plan (under the same settings) has nothing left to do.
    assert_converged_within_plan(emu, config, plan, before)
    redirects = emu.stats()["requests"].get("-", {}).get("307", 0)
    if settings.get("redirect_to_backend", True):
        assert redirects >= 1  # followed, then kept: a handful per run, never one per call
        assert redirects <= 4, redirects
    else:
        assert redirects == 0


@pytest.mark.parametrize("settings", ONE_AT_A_TIME, ids=_label)
def test_one_setting_at_a_time(
    emulators: dict[str, Emulator],
    settings: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _round_trip(emulators["commercial"], settings, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("settings", TRIPLES, ids=_label)
def test_next_link_style_cursor_affinity_and_redirect(
    emulators: dict[str, Emulator],
    settings: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _round_trip(emulators["commercial"], settings, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("cloud", CLOUDS[1:])  # commercial x every style is covered above
def test_cloud_and_next_link_style(
    emulators: dict[str, Emulator],
    cloud: str,
    style: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = emulators[cloud]
    assert emu.connection_env("writer")["AUTHPOLICY_CLOUD"] == cloud
    _round_trip(emu, {"next_link_style": style}, tmp_path, monkeypatch, capsys)
