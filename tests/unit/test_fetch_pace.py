"""FetchPace: the worker's fetch wait is short while commands keep coming and long when quiet."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.consumer.fetcher import Fetcher

from registry_core.messaging import FetchPace


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pace(clock: _Clock) -> tuple[FetchPace, SimpleNamespace]:
    fetcher = SimpleNamespace(_fetch_max_wait_ms=500)
    consumer = SimpleNamespace(_fetcher=fetcher)
    return FetchPace(consumer, idle_ms=5, busy_ms=1, window_s=2.0, clock=clock), fetcher


def test_idle_until_records_then_busy_until_the_window_has_passed() -> None:
    clock = _Clock()
    pace, fetcher = _pace(clock)
    assert fetcher._fetch_max_wait_ms == 5  # the idle wait from the start
    pace.saw(0)
    assert fetcher._fetch_max_wait_ms == 5
    pace.saw(3)
    assert fetcher._fetch_max_wait_ms == 1
    clock.now += 1.9
    pace.saw(0)  # quiet, but within the window: still busy
    assert fetcher._fetch_max_wait_ms == 1
    clock.now += 0.2
    pace.saw(0)  # 2.1 s without a record
    assert fetcher._fetch_max_wait_ms == 5
    pace.saw(1)
    assert fetcher._fetch_max_wait_ms == 1


def test_a_record_restarts_the_window() -> None:
    clock = _Clock()
    pace, fetcher = _pace(clock)
    for _ in range(5):
        pace.saw(1)
        clock.now += 1.5  # a command every 1.5 s keeps it busy
        pace.saw(0)
        assert fetcher._fetch_max_wait_ms == 1


def test_a_consumer_without_the_attribute_is_left_alone() -> None:
    pace = FetchPace(SimpleNamespace(), idle_ms=5, busy_ms=1, window_s=1.0)
    pace.saw(1)  # no error, nothing to set
    assert pace.current == 1


def test_aiokafka_reads_the_attribute_for_every_fetch_request() -> None:
    """The attribute FetchPace sets is the one aiokafka's fetcher reads each time it builds a
    fetch request (caught here if a release renames it, instead of the wait silently staying
    what the consumer was created with)."""
    assert "_fetch_max_wait_ms" in Fetcher.__init__.__code__.co_names
    assert "_fetch_max_wait_ms" in Fetcher._get_actions_per_node.__code__.co_names
