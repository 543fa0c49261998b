"""When and how long to wait before trying a call again (exo-adminapi.md §7).

429 waits what `Retry-After` says (decimal seconds, as the V3 module parses it); 503, 504,
connection failures and Exchange's transient exceptions back off exponentially with full
jitter. Every call also has an overall deadline, so a throttling storm ends in a clear error
instead of a hang.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: decimal seconds ("1.5"), or None when absent/bad.

    An HTTP date is not expected from Exchange; it is treated as absent (backoff applies).
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


@dataclass
class RetryPolicy:
    """Limits for retrying one logical call (all its attempts together).

    - `max_attempts`: tries ending in a transient failure before giving up (the V3 module: 6);
    - `max_throttle_attempts`: tries answered with throttling before giving up (429 storms last
      longer than blips, and Retry-After tells us how long to wait);
    - `base_delay` * 2**n (capped by `max_delay`), full jitter, for non-429 retries;
    - `deadline`: seconds from the first try after which no new try starts;
    - `max_retry_after`: a longer Retry-After than this is not waited for (raise instead).
    """

    max_attempts: int = 6
    max_throttle_attempts: int = 12
    base_delay: float = 1.0
    max_delay: float = 30.0
    deadline: float = 900.0
    max_retry_after: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    _rng_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def backoff(self, retry_number: int) -> float:
        """Delay before retry `retry_number` (1-based) of a non-throttled failure."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (retry_number - 1)))
        with self._rng_lock:
            # Full jitter, but never below a quarter: many threads must not retry in lockstep,
            # yet a retry must not come instantly.
            return ceiling * (0.25 + 0.75 * self.rng.random())

    def throttle_delay(self, retry_after: float | None, retry_number: int) -> float:
        """Delay after a 429: Retry-After plus a little jitter, else the exponential backoff."""
        if retry_after is None:
            return self.backoff(retry_number)
        with self._rng_lock:
            return retry_after + min(retry_after * 0.1, 0.5) * self.rng.random()


class Attempts:
    """Book-keeping for one logical call: counts tries, knows the deadline, sleeps."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = policy.clock()
        self.count = 0  # tries started
        self.throttled = 0  # tries answered with throttling
        self.failures = 0  # other retryable failures

    def start(self) -> int:
        self.count += 1
        return self.count

    def remaining(self) -> float:
        return self.policy.deadline - (self.policy.clock() - self.started)

    def may_retry_throttled(self, retry_after: float | None) -> float | None:
        """The delay before the next try after throttling, or None when out of budget."""
        self.throttled += 1
        if self.throttled >= self.policy.max_throttle_attempts:
            return None
        if retry_after is not None and retry_after > self.policy.max_retry_after:
            return None
        delay = self.policy.throttle_delay(retry_after, self.throttled)
        return delay if delay < self.remaining() else None

    def may_retry_failure(self) -> float | None:
        """The delay before the next try after a transient failure, or None when out of budget."""
        self.failures += 1
        if self.failures >= self.policy.max_attempts:
            return None
        delay = self.policy.backoff(self.failures)
        return delay if delay < self.remaining() else None

    def wait(self, delay: float) -> None:
        if delay > 0:
            self.policy.sleep(delay)
