"""The collector pause around snapshot reads (reconciler/tenant/pause_gc.py): overlapping
reads keep it paused until the last ends, a failure still ends the pause, and a collector the
caller had turned off stays off."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from reconciler.tenant.pause_gc import gc_paused


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_overlapping_reads_keep_it_paused_until_the_last_ends() -> None:
    first_in, second_out = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other_read() -> None:
        with gc_paused():
            first_in.set()
            second_out.wait(5)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=other_read)
    with gc_paused():
        thread.start()
        first_in.wait(5)
        seen.append(gc.isenabled())
    seen.append(gc.isenabled())  # the other read is still on
    second_out.set()
    thread.join(5)
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_a_failing_read_ends_the_pause() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("the read failed")
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
