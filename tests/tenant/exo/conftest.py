"""A shared emulator for the tenant integration tests, reset between tests."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.emulator.settings import runtime_setting_names
from reconciler.tenant.connect import add_connection_arguments, open_tenant
from reconciler.tenant.exo.retry import RetryPolicy
from reconciler.tenant.exo.tenant import ExoTenant

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
USERS = 2500


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=USERS, seed=7, state_dir=tmp_path_factory.mktemp("emu"), save_on_exit=False
    )
    with Emulator(settings) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The shared emulator with its tenant, statistics and faults as at start."""
    # requests would let this variable replace the session's trust; ours must not.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    defaults = dataclasses.asdict(EmulatorSettings())
    yield emulator
    emulator.set_faults(**{k: defaults[k] for k in runtime_setting_names()})
    if emulator.stats()["writes_changed_state"]:
        emulator.reset_state()  # regenerating the tenant costs; only after it was changed
    else:
        emulator.reset_stats()


def fast_retry(**overrides: Any) -> RetryPolicy:
    """Real retry logic with test-sized waits."""
    values: dict[str, Any] = {"base_delay": 0.01, "max_delay": 0.05, "deadline": 60.0}
    values.update(overrides)
    return RetryPolicy(**values)


def one_cursor(env: Mapping[str, str]) -> dict[str, str]:
    """`env` reading the users on one cursor (the default partitions them): for tests of
    what one cursor does, page by page."""
    return {**env, "AUTHPOLICY_READ_CONCURRENCY": "1"}


def connect(env: Mapping[str, str], **options: Any) -> ExoTenant:
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    options.setdefault("retry", fast_retry())
    tenant = open_tenant(parser.parse_args([]), env, **options)
    assert isinstance(tenant, ExoTenant)
    return tenant
