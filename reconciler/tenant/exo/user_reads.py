"""Reading every Get-User (or Get-CASMailbox) object: on one cursor, or partitioned by a
name's prefix on several (`Listing`: UserPrincipalName for users, Name for mailboxes).

A single cursor costs one round trip per 1,000 objects, one after another (each nextLink
comes with the page before it). A partitioned read asks for disjoint filters
(`partitions.py`) side by side, each on its own cursor:

- the first page of the unfiltered read is the probe: a tenant of one page is read in one
  request, and a larger one is split by what that page holds;
- the partitions go through a queue, the heaviest first, on at most `ways` threads; no more
  pages are asked for at once than a `ReadPace`'s AIMD limit, which takes one off on each
  request answered with throttling (429 or Exchange's concurrency error: a service capped at
  4 that refuses 4 of 8 takes the limit to 4 in one burst) and adds one back after a run of
  clean pages; reads side by side (users and mailboxes) share one pace, so together they
  ask for no more than it allows;
- a partition whose first page says more follow, while other workers would go idle, is split
  again (into 4) by what its page holds: its cursor is dropped, its users kept;
- objects are kept once each, by Entra object id (a probe's or a dropped page's objects are
  read again by the partitions that cover them, and no page order is documented);
- a partition whose cursor is refused, or whose request still fails after the client's own
  retries (503/504, a reset, throttling), is read again from its first page (up to `restarts`
  times: a partition is a few pages, so this is cheap, where one cursor would read everything
  again); any partition that fails past that stops the others and fails the read: never a
  partial set;
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
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from reconciler.apply.concurrency import AimdLimit
from reconciler.errors import TenantError
from reconciler.tenant.base import ProgressCallback
from reconciler.tenant.exo.client import AdminApiClient
from reconciler.tenant.exo.errors import ExoError, ExoPaginationExpiredError
from reconciler.tenant.exo.partitions import ROOT, Partition, split
from reconciler.tenant.exo.snapshot import mailbox_setting_of, user_from_json

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listing:
    """A Get- cmdlet read in full: the property its partitions filter on (and whose values
    on a first page weigh them), and what its objects are called in messages."""

    cmdlet: str
    prop: str
    noun: str


USERS = Listing("Get-User", "UserPrincipalName", "users")
# Name: filterable on every recipient cmdlet (Microsoft's filter-properties.md), and what a
# Get-CASMailbox object shows (it carries no UserPrincipalName).
MAILBOXES = Listing("Get-CASMailbox", "Name", "mailboxes")
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
    """Users from any number of Get-User pages, each once (by Entra object id), how many so
    far told to `progress`. Thread-safe."""

    def __init__(
        self,
        attributes: tuple[str, ...],
        policies_by_key: Mapping[str, str],
        progress: ProgressCallback | None = None,
    ) -> None:
        self._attributes = attributes
        self._policies_by_key = policies_by_key
        self._progress = progress
        self._lock = threading.Lock()
        self.users: dict[str, Any] = {}
        self.guids: dict[str, str] = {}
        self._without_id: set[str] = set()

    def add(self, page: Sequence[Mapping[str, Any]]) -> None:
        """Convert and keep the page's new users, and tell `progress` how many are kept now
        (under the lock: pages added side by side report rising counts)."""
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
            if self._progress is not None:
                self._progress(len(users), None)

    @property
    def without_id(self) -> int:
        return len(self._without_id)


class MailboxSet:
    """Get-CASMailbox objects from any number of pages, each once (by its first key: Entra
    object id, else GUID): the SMTP AUTH setting by every key, the name by the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings: dict[str, Any] = {}
        self.names: dict[str, str] = {}

    def add(self, page: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            for obj in page:
                keys, setting = mailbox_setting_of(obj)
                if not keys or keys[0] in self.names:
                    continue
                for key in keys:
                    self.settings[key] = setting
                self.names[keys[0]] = str(obj.get("Name") or keys[0])


class Sink(Protocol):
    """Where a read's pages go (`UserSet`, `MailboxSet`): called from several threads."""

    def add(self, page: Sequence[Mapping[str, Any]]) -> None: ...


class ReadPace:
    """How many pages the partitioned reads of one client ask for at once: an AIMD limit
    (`ways` at most) that every throttled answer to one of their pages lowers by one as it
    comes, and a run of `PACE_WINDOW` x `ways` clean pages raises by one. A page waiting to
    be asked again (after throttling or a transient failure) gives its slot up meanwhile and
    takes one again before it is sent, so the pages in flight never outnumber the limit and a
    refused page's backoff leaves the others their slots. Used as a context manager around
    the reads: it listens to the client's throttling and retry waits meanwhile (and passes
    them on to whoever listened before)."""

    def __init__(self, client: AdminApiClient, ways: int) -> None:
        self.client = client
        self.limit = AimdLimit(
            initial=ways, maximum=ways, increase_after=PACE_WINDOW * ways, step_down=True
        )
        self._gate = threading.Condition()
        self._asking = 0
        # A worker's page: its stop event, whether it holds a slot, its throttled answers.
        self._worker = threading.local()
        self._previous: Callable[[float | None], None] | None = None
        self._previous_wait: Callable[[], AbstractContextManager[None]] = nullcontext

    def __enter__(self) -> ReadPace:
        self._previous = self.client.on_throttle
        self._previous_wait = self.client.backing_off
        self.client.on_throttle = self._on_throttle
        self.client.backing_off = self._backing_off
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.client.on_throttle = self._previous
        self.client.backing_off = self._previous_wait

    def _on_throttle(self, retry_after: float | None) -> None:
        # Every throttled answer to a page counts (no epoch): a burst of refusals from a
        # capped service is how far over the cap the reads are, one step each.
        if getattr(self._worker, "throttled", None) is not None:
            self._worker.throttled += 1
            self.limit.on_throttle()
        if self._previous is not None:
            self._previous(retry_after)

    @contextmanager
    def _backing_off(self) -> Iterator[None]:
        with self._previous_wait():
            if not getattr(self._worker, "holding", False):
                yield  # not one of our pages
                return
            self._release()
            yield  # if the wait raises, the slot is already given up
            self._acquire(self._worker.stop)

    def _acquire(self, stop: threading.Event) -> None:
        with self._gate:
            while self._asking >= self.limit.limit and not stop.is_set():
                self._gate.wait(0.5)
            if stop.is_set():
                raise _Stopped
            self._asking += 1
        self._worker.holding = True

    def _release(self) -> None:
        if self._worker.holding:
            self._worker.holding = False
            with self._gate:
                self._asking -= 1
                self._gate.notify_all()

    @contextmanager
    def page(self, stop: threading.Event) -> Iterator[None]:
        """A slot to ask for one page in (raises _Stopped once `stop` is set)."""
        self._acquire(stop)
        self._worker.stop = stop
        self._worker.throttled = 0
        try:
            yield
        finally:
            self._release()
            if not self._worker.throttled:
                self.limit.on_success()
            self._worker.throttled = None

    def wake(self) -> None:
        with self._gate:
            self._gate.notify_all()


class _Stopped(Exception):
    """Another partition failed: this one stops between pages."""


def read_cursor(
    client: AdminApiClient,
    listing: Listing,
    parameters: Mapping[str, Any],
    select: Sequence[str],
    found: Sink,
    *,
    restarts: int,
    stop: threading.Event | None = None,
    split_first: Callable[[list[str]], list[Partition] | None] | None = None,
    restart_on_transient: bool = False,
    pace: ReadPace | None = None,
) -> list[Partition] | None:
    """Every object of one `listing` read into `found`, restarted whole when its cursor is
    refused (and, with `restart_on_transient`, when a request's retries ran out on a
    retryable error); raises rather than stopping early. `split_first(names)`, called after a
    first page that has more behind it, may return partitions to read instead: the cursor is
    then dropped (its objects kept) and they are returned. With a `pace`, each page is asked
    for in one of its slots."""
    stop = stop or threading.Event()
    for restart in range(restarts + 1):
        try:
            first = True
            pages = client.pages(listing.cmdlet, dict(parameters), select=select)
            while True:
                with pace.page(stop) if pace is not None else nullcontext():
                    page = next(pages, None)
                if page is None:
                    break
                if stop.is_set():
                    raise _Stopped
                found.add(page.value)
                if first and page.next_link and split_first is not None:
                    names = [str(obj.get(listing.prop) or "") for obj in page.value]
                    parts = split_first(names)
                    if parts:
                        return parts
                first = False
            return None
        except ExoPaginationExpiredError as exc:
            if restart >= restarts:
                raise TenantError(
                    f"reading {listing.noun} failed: Exchange refused the next page "
                    f"{restart + 1} time(s) ({exc.exchange_text or exc}); nothing was changed, "
                    "try again"
                ) from None
            log.warning(
                "Exchange refused the %s cursor; reading those %s again",
                listing.cmdlet,
                listing.noun,
            )
            client.stats.add(read_restarts=1)
        except ExoError as exc:
            if not (restart_on_transient and exc.retryable) or restart >= restarts:
                raise
            log.warning("%s failed (%s); reading that partition again", listing.cmdlet, exc)
            client.stats.add(read_restarts=1)
    raise AssertionError("unreachable")  # pragma: no cover


def read_partitioned(
    client: AdminApiClient,
    listing: Listing,
    select: Sequence[str],
    found: Sink,
    *,
    ways: int,
    restarts: int,
    pace: ReadPace | None = None,
) -> int:
    """Every object of `listing` into `found` on up to `ways` cursors side by side, no more
    pages at once than `pace` allows (its own when None); how many filters were issued (the
    probe counted)."""
    parameters = {"ResultSize": "Unlimited"}
    parts: list[Partition] = []

    def probe_split(names: list[str]) -> list[Partition] | None:
        parts.extend(split(ROOT, FIRST_SPLIT * ways, names))
        return parts or None

    if (
        read_cursor(
            client, listing, parameters, select, found, restarts=restarts, split_first=probe_split
        )
        is None
    ):
        return 1  # one page held everything, or the whole set could not be split
    with nullcontext(pace) if pace is not None else ReadPace(client, ways) as shared:
        return 1 + _run(
            client, listing, select, found, parts, ways=ways, restarts=restarts, pace=shared
        )


def _run(
    client: AdminApiClient,
    listing: Listing,
    select: Sequence[str],
    found: Sink,
    parts: list[Partition],
    *,
    ways: int,
    restarts: int,
    pace: ReadPace,
) -> int:
    stop = threading.Event()
    lock = threading.Lock()
    generation: dict[Partition, int] = {}
    reserved: dict[Partition, int] = {}  # cursors a partition splitting again has claimed
    outstanding = [0]  # queued or being read, seen by the workers to decide a split
    issued = len(parts)

    def split_first(part: Partition) -> Callable[[list[str]], list[Partition] | None]:
        def decide(names: list[str]) -> list[Partition] | None:
            with lock:
                # Only into cursors that would idle otherwise (the limit now, less what is
                # queued or being read, this one included), reserved at once so partitions
                # deciding together do not all count the same free cursors.
                ways_now = min(SPLIT_WAYS, pace.limit.limit - outstanding[0] + 1)
                if ways_now < 2 or generation.get(part, 0) >= SPLIT_DEPTH:
                    return None
                reserved[part] = ways_now - 1
                outstanding[0] += ways_now - 1
            pieces = split(part.atoms, ways_now, names)
            with lock:
                if len(pieces) <= 1:
                    outstanding[0] -= reserved.pop(part)
                    return None
                for piece in pieces:
                    generation[piece] = generation.get(part, 0) + 1
            return pieces

        return decide

    def one(part: Partition) -> list[Partition] | None:
        return read_cursor(
            client,
            listing,
            {"ResultSize": "Unlimited", "Filter": part.filter(listing.prop)},
            select,
            found,
            restarts=restarts,
            stop=stop,
            split_first=split_first(part),
            restart_on_transient=True,
            pace=pace,
        )

    queue = deque(parts)
    futures: dict[Future[list[Partition] | None], Partition] = {}
    failure: BaseException | None = None
    prefix = f"read-{listing.noun}"
    with ThreadPoolExecutor(max_workers=ways, thread_name_prefix=prefix) as pool:
        with lock:
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
                        pace.wake()
                    continue
                if pieces:
                    queue.extendleft(reversed(pieces))
                    issued += len(pieces)
                with lock:
                    reserved.pop(done_part, None)
                    outstanding[0] = len(queue) + len(futures) + sum(reserved.values())
    if failure is not None:
        raise failure
    return issued
