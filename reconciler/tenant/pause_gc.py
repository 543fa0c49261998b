"""The cyclic garbage collector paused while a snapshot is read.

Reading a tenant allocates millions of objects that never form cycles (the JSON of each page,
the users built from it) and keeps a few hundred thousand of them. The collector cannot free
any of it, yet it traverses the young pages each time it runs, and a partitioned read holds
up to 8 pages at once: measured at 100,000 users (the no-op plan's process CPU, two rounds),
3.15-3.43 s on one cursor and 3.87-3.95 s on 8 with it running, 3.09-3.17 s and 3.14-3.55 s
with it off. Reference counting still frees everything that is dropped; the collector runs
again, as before, once the last read that paused it ends (reads of a fleet overlap, hence the
count).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_readers = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector until every read that paused it has ended."""
    global _readers, _was_enabled
    with _lock:
        if _readers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _readers += 1
    try:
        yield
    finally:
        with _lock:
            _readers -= 1
            if _readers == 0 and _was_enabled:
                gc.enable()
