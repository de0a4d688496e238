"""FetchPace: the worker's fetch wait is short while commands keep coming and long when quiet,
and never shorter than the broker needs to read its log (Tansu answers empty until then)."""

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


def test_an_empty_fetch_below_the_high_water_mark_raises_the_wait_until_records_come() -> None:
    """Tansu answers a fetch whose wait ran out before it had listed its log with nothing: the
    wait must grow past the broker's listing time, or the consumer never gets a record."""
    clock = _Clock()
    pace, fetcher = _pace(clock)
    pace.saw(1)
    assert fetcher._fetch_max_wait_ms == 1
    waits = []
    for _ in range(12):
        pace.saw(0, behind=True)
        waits.append(fetcher._fetch_max_wait_ms)
    assert waits == sorted(waits) and waits[-1] >= 5  # grows, x1.25 each time
    assert waits[:2] == [1, 2]  # from the current wait (1 ms), not from the cap
    grown = fetcher._fetch_max_wait_ms
    pace.saw(5)  # records: the floor stays close to what the broker needed
    assert grown * 0.95 <= fetcher._fetch_max_wait_ms <= grown
    assert pace.floor < grown
    for _ in range(3000):
        pace.saw(5)
    assert fetcher._fetch_max_wait_ms == 1  # decays back to the busy wait once fetches fill


def test_the_floor_applies_to_the_idle_wait_too_and_is_capped() -> None:
    clock = _Clock()
    fetcher = SimpleNamespace(_fetch_max_wait_ms=500)
    pace = FetchPace(
        SimpleNamespace(_fetcher=fetcher), idle_ms=5, busy_ms=1, window_s=2.0, max_ms=40,
        clock=clock,
    )  # fmt: skip
    for _ in range(50):
        pace.saw(0, behind=True)
    assert fetcher._fetch_max_wait_ms == 40  # never past max_ms
    clock.now += 10
    pace.saw(0)  # quiet: the idle wait, but not below the broker's floor
    assert fetcher._fetch_max_wait_ms == 40
    # a read returns after 3x the wait (at least 20 ms), so the floor can follow the broker
    assert pace.poll_ms(500) == 120 and pace.poll_ms(100) == 100


def test_a_broker_that_answers_when_records_exist_keeps_the_plain_waits() -> None:
    """Apache Kafka never answers empty below the high-water mark: the waits are exactly the
    idle/busy ones, whatever the traffic."""
    clock = _Clock()
    pace, fetcher = _pace(clock)
    seen = []
    for n in [0, 3, 0, 0, 7, 1, 0]:
        pace.saw(n, behind=False)
        seen.append(fetcher._fetch_max_wait_ms)
        clock.now += 1.5
    assert seen == [5, 1, 1, 5, 1, 1, 1] and pace.floor == 0


def test_a_reader_without_waits_of_its_own_keeps_the_consumers_wait_plus_the_floor() -> None:
    fetcher = SimpleNamespace(_fetch_max_wait_ms=7)
    consumer = SimpleNamespace(_fetcher=fetcher, _fetch_max_wait_ms=20)
    pace = FetchPace.following(consumer)
    assert fetcher._fetch_max_wait_ms == 20 and pace.poll_ms(1000) == 60
    for n in [0, 4, 0]:
        pace.saw(n)
    assert fetcher._fetch_max_wait_ms == 20
    pace.saw(0, behind=True)
    assert fetcher._fetch_max_wait_ms == 25
