"""Retry timing: Retry-After as decimal seconds, bounded backoff with jitter, deadlines."""

from __future__ import annotations

import random

import pytest

from reconciler.tenant.exo.retry import Attempts, RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1.5", 1.5),
        ("0", 0.0),
        (" 2 ", 2.0),
        ("0.25", 0.25),
        (None, None),
        ("soon", None),
        ("-1", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def _policy(**kw: object) -> RetryPolicy:
    now = [0.0]
    slept: list[float] = []

    def sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    policy = RetryPolicy(sleep=sleep, clock=lambda: now[0], rng=random.Random(3), **kw)  # type: ignore[arg-type]
    policy.slept = slept  # type: ignore[attr-defined]
    return policy


def test_backoff_grows_exponentially_within_jitter_bounds() -> None:
    policy = _policy(base_delay=1.0, max_delay=8.0)
    for n, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        delay = policy.backoff(n)
        assert ceiling * 0.25 <= delay <= ceiling


def test_throttle_delay_honours_retry_after() -> None:
    policy = _policy()
    delay = policy.throttle_delay(1.5, 1)
    assert 1.5 <= delay <= 1.65


def test_failure_budget_is_max_attempts() -> None:
    attempts = Attempts(_policy(max_attempts=3, base_delay=0.01))
    delays = []
    for _ in range(5):
        attempts.start()
        delays.append(attempts.may_retry_failure())
    assert [d is not None for d in delays] == [True, True, False, False, False]


def test_throttle_budget_and_overlong_retry_after() -> None:
    attempts = Attempts(_policy(max_throttle_attempts=3, max_retry_after=10))
    assert attempts.may_retry_throttled(0.5) is not None
    assert attempts.may_retry_throttled(0.5) is not None
    assert attempts.may_retry_throttled(0.5) is None
    assert Attempts(_policy(max_retry_after=10)).may_retry_throttled(11) is None


def test_deadline_stops_retries() -> None:
    policy = _policy(deadline=5.0, max_throttle_attempts=100)
    attempts = Attempts(policy)
    allowed = 0
    while (delay := attempts.may_retry_throttled(2.0)) is not None:
        attempts.wait(delay)
        allowed += 1
    assert allowed == 2  # 2 + 2 = 4 s waited; a third 2 s wait would pass the 5 s deadline
