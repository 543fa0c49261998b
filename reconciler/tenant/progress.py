"""A progress bar for snapshot reads: on a terminal only, quiet otherwise.

    with read_progress() as progress:
        snapshot = tenant.read_snapshot(needs, progress=progress)

`progress` is a `ProgressCallback` (objects read so far, total when known). On a terminal
(stderr is a tty) it drives a rich progress line on stderr; otherwise it only logs at debug
level, so CI logs and piped output stay clean.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from reconciler.tenant.base import ProgressCallback

log = logging.getLogger(__name__)


@contextmanager
def read_progress(
    label: str = "Reading users", stream: IO[str] | None = None
) -> Iterator[ProgressCallback]:
    """A ProgressCallback that shows a live bar on a terminal and is silent elsewhere."""
    out = stream if stream is not None else sys.stderr
    if not _is_terminal(out):

        def quiet(done: int, total: int | None) -> None:
            log.debug("%s: %d%s", label, done, f" / {total}" if total else "")

        yield quiet
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=out)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def show(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield show


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
