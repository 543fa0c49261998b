"""Settings for the whole suite."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_apply_locks() -> Iterator[None]:
    """apply's per-tenant lock (reconciler/apply/lock.py) lives under $XDG_RUNTIME_DIR: give
    each test session its own, so two suites on one machine (same emulated tenant ids) do not
    refuse each other's applies. Subprocesses inherit it."""
    saved = os.environ.get("XDG_RUNTIME_DIR")
    with tempfile.TemporaryDirectory(prefix="authpolicy-test-run-") as directory:
        os.environ["XDG_RUNTIME_DIR"] = directory
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = saved
