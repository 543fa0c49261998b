"""Adaptive concurrency for user writes: additive increase, multiplicative decrease (AIMD).

Exchange publishes no write rate; it answers 429 (with Retry-After) or its "maximum number of
concurrent requests" error when pushed. The tenant client already waits out Retry-After and
retries; the executor's part is to stop adding pressure: halve the number of batches in flight
on any throttle signal, and grow by one after a run of clean calls.
"""

from __future__ import annotations

import threading


class AimdLimit:
    """How many calls may be in flight now. Thread-safe.

    A throttle signal halves the limit (never below `minimum`) and restarts the success run;
    `increase_after` consecutive clean calls raise it by one (never above `maximum`). Signals
    from calls that started before the last decrease are ignored, so one burst of 429s from
    calls already in flight halves the limit once, not once per call.
    """

    def __init__(
        self,
        *,
        initial: int = 4,
        minimum: int = 1,
        maximum: int = 16,
        increase_after: int | None = None,
        step_down: bool = False,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self._limit = max(minimum, min(initial, maximum))
        self._increase_after = increase_after
        # step_down: a throttle signal takes one off instead of halving (reads: each signal
        # is one refused cursor among a few, not a storm of writes)
        self._step_down = step_down
        self._clean_run = 0
        self._epoch = 0  # bumped on each decrease
        self.decreases = 0
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        with self._lock:
            return self._limit

    @property
    def epoch(self) -> int:
        """Pass this to `on_throttle`/`on_success` for a call started now."""
        with self._lock:
            return self._epoch

    def on_success(self, epoch: int | None = None) -> None:
        with self._lock:
            if epoch is not None and epoch != self._epoch:
                return
            self._clean_run += 1
            # Grow once per "window" of clean calls: a window is the current limit by default.
            needed = self._increase_after or self._limit
            if self._clean_run >= needed and self._limit < self.maximum:
                self._limit += 1
                self._clean_run = 0

    def on_throttle(self, epoch: int | None = None) -> None:
        with self._lock:
            if epoch is not None and epoch != self._epoch:
                return
            lowered = self._limit - 1 if self._step_down else self._limit // 2
            self._limit = max(self.minimum, lowered)
            self._clean_run = 0
            self._epoch += 1
            self.decreases += 1
