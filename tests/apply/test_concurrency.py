"""AIMD: halve on throttling (once per burst), grow by one after a window of clean calls."""

from __future__ import annotations

from reconciler.apply.concurrency import AimdLimit


def test_halves_on_throttle_and_never_below_minimum() -> None:
    limit = AimdLimit(initial=8, maximum=16)
    limit.on_throttle()
    assert limit.limit == 4
    limit.on_throttle()
    limit.on_throttle()
    limit.on_throttle()
    assert limit.limit == 1


def test_a_burst_from_calls_already_in_flight_halves_once() -> None:
    limit = AimdLimit(initial=8, maximum=16)
    epoch = limit.epoch
    for _ in range(5):
        limit.on_throttle(epoch)
    assert limit.limit == 4
    assert limit.decreases == 1


def test_grows_by_one_per_window_of_clean_calls_up_to_maximum() -> None:
    limit = AimdLimit(initial=2, maximum=3)
    limit.on_success()
    assert limit.limit == 2
    limit.on_success()
    assert limit.limit == 3
    for _ in range(10):
        limit.on_success()
    assert limit.limit == 3
