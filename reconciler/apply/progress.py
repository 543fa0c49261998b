"""Progress displays for apply: a rich bar on a terminal, one line per phase otherwise."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _counts_text(counts: Mapping[str, int]) -> str:
    order = ("applied", "failed", "skipped", "not_found")
    parts = [f"{counts[k]} {k.replace('_', ' ')}" for k in order if counts.get(k)]
    return ", ".join(parts) or "nothing"


class PhaseLines:
    """One line per finished phase, e.g. `apply: user assignments: 5000 applied (12.3 s)`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._started = 0.0
        self._retries = 0
        self._retries_at_start = 0

    def start_phase(self, phase: str, total: int) -> None:
        self._started = time.monotonic()
        self._retries_at_start = self._retries

    def advance(self, done: int, retries: int) -> None:
        self._retries = retries

    def end_phase(self, phase: str, counts: Mapping[str, int]) -> None:
        elapsed = time.monotonic() - self._started
        retries = self._retries - self._retries_at_start
        extra = f", {retries} retries" if retries else ""
        self.stream.write(f"apply: {phase}: {_counts_text(counts)} ({elapsed:.1f} s{extra})\n")
        self.stream.flush()


class RateColumn(TextColumn):
    """Changes per second of the current phase."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Any) -> Any:
        speed = task.finished_speed or task.speed
        return f"{speed:,.0f}/s" if speed else "  -/s"


class ProgressBar:
    """A rich progress bar per phase: done/total, rate, ETA and retries so far."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[retries]} retries"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start_phase(self, phase: str, total: int) -> None:
        self._task = self._progress.add_task(phase, total=total, retries=0)

    def advance(self, done: int, retries: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, advance=done, retries=retries)

    def end_phase(self, phase: str, counts: Mapping[str, int]) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=f"{phase}: {_counts_text(counts)}")
        self._task = None
