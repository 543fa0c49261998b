"""ReadPace, the limit on pages a partitioned read asks for at once: a page waiting to be
asked again gives its slot up meanwhile (a refused page's backoff does not idle the others)
and takes one again before it is sent, so the pages in flight never outnumber the limit."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import pytest

from reconciler.tenant.exo.user_reads import ReadPace, _Stopped


class FakeClient:
    """What ReadPace hooks into on AdminApiClient: the throttle and retry-wait listeners."""

    def __init__(self) -> None:
        self.on_throttle: Any = None
        self.backing_off: Any = nullcontext


def _pace(ways: int) -> tuple[ReadPace, FakeClient]:
    client = FakeClient()
    return ReadPace(cast(Any, client), ways), client


def _backing_off(client: FakeClient) -> AbstractContextManager[None]:
    return cast(AbstractContextManager[None], client.backing_off())


def test_a_page_backing_off_gives_its_slot_to_another_and_takes_one_again() -> None:
    pace, client = _pace(1)
    stop = threading.Event()
    other_in = threading.Event()
    seen: list[int] = []

    def other() -> None:
        with pace.page(stop):
            seen.append(pace._asking)
            other_in.set()

    with pace:
        with pace.page(stop):
            assert pace._asking == 1
            with _backing_off(client):  # what the client does around a retry's wait
                assert pace._asking == 0
                thread = threading.Thread(target=other)
                thread.start()
                assert other_in.wait(5)  # the one slot was free while this page waited
                thread.join(5)
            assert pace._asking == 1  # taken again before the retry is sent
        assert pace._asking == 0
    assert seen == [1]  # never two pages at once on a limit of one
    assert client.backing_off is nullcontext  # the client's listeners are restored


def test_a_page_retried_waits_for_a_slot_under_the_limit() -> None:
    pace, client = _pace(1)
    stop = threading.Event()
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def other() -> None:
        with pace.page(stop):
            holding.set()
            release.wait(5)
            order.append("other done")

    with pace:
        with pace.page(stop):
            with _backing_off(client):
                thread = threading.Thread(target=other)
                thread.start()
                assert holding.wait(5)
                threading.Timer(0.2, release.set).start()
            order.append("retry sent")  # only once the other page gave the slot back
        thread.join(5)
    assert order == ["other done", "retry sent"]


def test_a_stop_during_a_backoff_stops_the_page_without_unbalancing_the_slots() -> None:
    pace, client = _pace(2)
    stop = threading.Event()
    with pace:
        with pytest.raises(_Stopped), pace.page(stop), _backing_off(client):
            stop.set()  # another partition failed meanwhile
        assert pace._asking == 0
        with pace.page(threading.Event()):
            assert pace._asking == 1


def test_a_wait_outside_a_page_is_left_alone_and_passed_on() -> None:
    pace, client = _pace(2)
    entered: list[str] = []

    class Previous:
        def __enter__(self) -> None:
            entered.append("previous")

        def __exit__(self, *exc: object) -> None:
            entered.append("previous done")

    client.backing_off = Previous
    with pace, _backing_off(client):  # not one of the read's pages (another thread's call)
        assert pace._asking == 0
    assert entered == ["previous", "previous done"]
    assert client.backing_off is Previous


def test_throttled_answers_lower_the_limit_one_each() -> None:
    pace, client = _pace(8)
    stop = threading.Event()
    with pace:
        with pace.page(stop):
            for _ in range(3):
                client.on_throttle(None)
        client.on_throttle(None)  # not during one of the read's pages: not counted
    assert pace.limit.limit == 5
