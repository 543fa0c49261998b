"""Reading every Get-User object: on one cursor, or partitioned by UPN prefix on several.

A single cursor costs one round trip per 1,000 users, one after another (each nextLink comes
with the page before it). A partitioned read asks for disjoint filters (`partitions.py`) side
by side, each on its own cursor:

- the first page of the unfiltered read is the probe: a tenant of one page is read in one
  request, and a larger one is split by what that page holds;
- the partitions go through a queue, the heaviest first, on at most `ways` threads; no more
  pages are asked for at once than an AIMD limit that takes one off on each request answered
  with throttling (429 or Exchange's concurrency error: a service capped at 4 that refuses 4
  of 8 takes the limit to 4 in one burst) and adds one back after a run of clean pages;
- a partition whose first page says more follow, while other workers would go idle, is split
  again (into 4) by what its page holds: its cursor is dropped, its users kept;
- users are kept once each by Entra object id (a probe's or a dropped page's users are read
  again by the partitions that cover them, and no page order is documented);
- a partition whose cursor is refused, or whose request still fails after the client's own
  retries (503/504, a reset, throttling), is read again from its first page (up to `restarts`
  times: a partition is a few pages, so this is cheap, where one cursor would read everything
  again); any partition that fails past that stops the others and fails the read: never a
  partial set of users;
- `ExoInvalidParameterError` (the service refused the filter) propagates, and the caller reads
  on one cursor.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from reconciler.apply.concurrency import AimdLimit
from reconciler.errors import TenantError
from reconciler.tenant.base import ProgressCallback
from reconciler.tenant.exo.client import AdminApiClient
from reconciler.tenant.exo.errors import ExoError, ExoPaginationExpiredError
from reconciler.tenant.exo.partitions import ROOT, Partition, split
from reconciler.tenant.exo.snapshot import user_from_json

log = logging.getLogger(__name__)

PROPERTY = "UserPrincipalName"
SPLIT_WAYS = 4  # a partition found large is split into at most this many
# A piece of a partition split while reading is not split again: it is a quarter of one
# already, and splitting drops the page that said it was large (read again by the pieces).
SPLIT_DEPTH = 1
# The probe's split: this many partitions per cursor (enough that the heaviest partitions,
# read first, leave the small ones to even out the end).
FIRST_SPLIT = 4
# Clean pages per cursor before the limit on pages asked for at once goes up by one again.
PACE_WINDOW = 4


class UserSet:
    """Users from any number of Get-User pages, each once (by Entra object id). Thread-safe."""

    def __init__(self, attributes: tuple[str, ...], policies_by_key: Mapping[str, str]) -> None:
        self._attributes = attributes
        self._policies_by_key = policies_by_key
        self._lock = threading.Lock()
        self.users: dict[str, Any] = {}
        self.guids: dict[str, str] = {}
        self._without_id: set[str] = set()

    def add(
        self, page: Sequence[Mapping[str, Any]], progress: ProgressCallback | None = None
    ) -> int:
        """Convert and keep the page's new users; how many users are kept now, also told to
        `progress` (under the lock: pages added side by side report rising counts)."""
        with self._lock:
            users = self.users
            for obj in page:
                raw = obj.get("ExternalDirectoryObjectId")
                if raw.__class__ is str and raw.lower() in users:
                    continue  # seen on another page: not converted again
                row = user_from_json(obj, self._attributes, self._policies_by_key)
                if row is None:
                    self._without_id.add(str(obj.get("Guid") or obj.get("Identity") or ""))
                    continue
                if row.user.id in users:
                    continue
                users[row.user.id] = row.user
                if row.exchange_guid:
                    self.guids[row.user.id] = row.exchange_guid
            if progress is not None:
                progress(len(users), None)
            return len(users)

    @property
    def without_id(self) -> int:
        return len(self._without_id)


class _Stopped(Exception):
    """Another partition failed: this one stops between pages."""


def read_cursor(
    client: AdminApiClient,
    parameters: Mapping[str, Any],
    select: Sequence[str],
    found: UserSet,
    *,
    restarts: int,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    split_first: Callable[[list[str]], list[Partition] | None] | None = None,
    restart_on_transient: bool = False,
    pace: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> list[Partition] | None:
    """Every user of one Get-User read into `found`, restarted whole when its cursor is
    refused (and, with `restart_on_transient`, when a request's retries ran out on a
    retryable error); raises rather than stopping early. `split_first(upns)`, called after a
    first page that has more behind it, may return partitions to read instead: the cursor is
    then dropped (its users kept) and they are returned. Each page is asked for inside
    `pace()` (a slot of the partitioned read's limit)."""
    for restart in range(restarts + 1):
        try:
            first = True
            pages = client.pages("Get-User", dict(parameters), select=select)
            while True:
                with pace():
                    page = next(pages, None)
                if page is None:
                    break
                if stop is not None and stop.is_set():
                    raise _Stopped
                found.add(page.value, progress)
                if first and page.next_link and split_first is not None:
                    upns = [str(obj.get(PROPERTY) or "") for obj in page.value]
                    parts = split_first(upns)
                    if parts:
                        return parts
                first = False
            return None
        except ExoPaginationExpiredError as exc:
            if restart >= restarts:
                raise TenantError(
                    f"reading users failed: Exchange refused the next page {restart + 1} "
                    f"time(s) ({exc.exchange_text or exc}); nothing was changed, try again"
                ) from None
            log.warning("Exchange refused the Get-User cursor; reading those users again")
            client.stats.add(read_restarts=1)
        except ExoError as exc:
            if not (restart_on_transient and exc.retryable) or restart >= restarts:
                raise
            log.warning("Get-User failed (%s); reading that partition again", exc)
            client.stats.add(read_restarts=1)
    raise AssertionError("unreachable")  # pragma: no cover


def read_partitioned(
    client: AdminApiClient,
    select: Sequence[str],
    found: UserSet,
    *,
    ways: int,
    restarts: int,
    progress: ProgressCallback | None = None,
) -> int:
    """Every user into `found` on up to `ways` cursors side by side; how many filters were
    issued (the probe counted)."""
    parameters = {"ResultSize": "Unlimited"}
    parts: list[Partition] = []

    def probe_split(upns: list[str]) -> list[Partition] | None:
        parts.extend(split(ROOT, FIRST_SPLIT * ways, upns))
        return parts or None

    if (
        read_cursor(
            client,
            parameters,
            select,
            found,
            restarts=restarts,
            progress=progress,
            split_first=probe_split,
        )
        is None
    ):
        return 1  # one page held everything, or the whole set could not be split
    return 1 + _run(client, select, found, parts, ways=ways, restarts=restarts, progress=progress)


def _run(
    client: AdminApiClient,
    select: Sequence[str],
    found: UserSet,
    parts: list[Partition],
    *,
    ways: int,
    restarts: int,
    progress: ProgressCallback | None,
) -> int:
    stop = threading.Event()
    limit = AimdLimit(initial=ways, maximum=ways, increase_after=PACE_WINDOW * ways, step_down=True)
    gate = threading.Condition()
    asking = [0]  # pages being asked for now
    worker = threading.local()  # a read worker's: throttle answers during its current page
    generation: dict[Partition, int] = {}
    reserved: dict[Partition, int] = {}  # cursors a partition splitting again has claimed
    outstanding = [0]  # queued or being read, seen by the workers to decide a split
    issued = len(parts)

    def split_first(part: Partition) -> Callable[[list[str]], list[Partition] | None]:
        def decide(upns: list[str]) -> list[Partition] | None:
            with gate:
                # Only into cursors that would idle otherwise (the limit now, less what is
                # queued or being read, this one included), reserved at once so partitions
                # deciding together do not all count the same free cursors.
                ways_now = min(SPLIT_WAYS, limit.limit - outstanding[0] + 1)
                if ways_now < 2 or generation.get(part, 0) >= SPLIT_DEPTH:
                    return None
                reserved[part] = ways_now - 1
                outstanding[0] += ways_now - 1
            pieces = split(part.atoms, ways_now, upns)
            with gate:
                if len(pieces) <= 1:
                    outstanding[0] -= reserved.pop(part)
                    return None
                for piece in pieces:
                    generation[piece] = generation.get(part, 0) + 1
            return pieces

        return decide

    @contextmanager
    def pace() -> Iterator[None]:
        with gate:
            while asking[0] >= limit.limit and not stop.is_set():
                gate.wait(0.5)
            if stop.is_set():
                raise _Stopped
            asking[0] += 1
        worker.throttled = 0
        try:
            yield
        finally:
            with gate:
                asking[0] -= 1
                gate.notify_all()
            if not worker.throttled:
                limit.on_success()
            worker.throttled = None

    previous_hook = client.on_throttle

    def on_throttle(retry_after: float | None) -> None:
        # Every throttled answer to a page counts (no epoch): a burst of refusals from a
        # capped service is how far over the cap the read is, one step each.
        if getattr(worker, "throttled", None) is not None:
            worker.throttled += 1
            limit.on_throttle()
        if previous_hook is not None:
            previous_hook(retry_after)

    def one(part: Partition) -> list[Partition] | None:
        return read_cursor(
            client,
            {"ResultSize": "Unlimited", "Filter": part.filter(PROPERTY)},
            select,
            found,
            restarts=restarts,
            progress=progress,
            stop=stop,
            split_first=split_first(part),
            restart_on_transient=True,
            pace=pace,
        )

    queue = deque(parts)
    futures: dict[Future[list[Partition] | None], Partition] = {}
    failure: BaseException | None = None
    client.on_throttle = on_throttle  # this read's pages, then whoever listened before
    try:
        with ThreadPoolExecutor(max_workers=ways, thread_name_prefix="read-users") as pool:
            with gate:
                outstanding[0] = len(queue)
            while (queue and failure is None) or futures:
                while queue and failure is None and len(futures) < ways:
                    part = queue.popleft()
                    futures[pool.submit(one, part)] = part
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    done_part = futures.pop(future)
                    try:
                        pieces = future.result()
                    except _Stopped:
                        continue
                    except BaseException as exc:  # re-raised once every partition has stopped
                        if failure is None:
                            failure = exc
                            stop.set()
                            with gate:
                                gate.notify_all()
                        continue
                    if pieces:
                        queue.extendleft(reversed(pieces))
                        issued += len(pieces)
                    with gate:
                        reserved.pop(done_part, None)
                        outstanding[0] = len(queue) + len(futures) + sum(reserved.values())
    finally:
        client.on_throttle = previous_hook
    if failure is not None:
        raise failure
    return issued
