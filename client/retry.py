"""Retrying what is safe to retry, while the registry's services restart.

Every HTTP request the client makes is a read (cards, config, command outcomes) or an
idempotent upload into a command's own staging area, and every command is idempotent by its
`command_id` (the sequencer drops a second copy; the client then reads the first outcome). So
re-sending after a connection error, a timeout or a 502/503/504 can never register a card
twice: the worst case is a duplicate message in the commands topic, which is de-duplicated.

A 500 is not retried (it is a bug, not an outage), and neither is any 4xx. A registry that
never answered this client (a wrong OPSML_TRACKING_URI, nothing started) fails after
`first_contact_seconds` instead of the whole budget: that is a mistake to report, not an outage.

Retries back off exponentially with jitter (honouring `Retry-After`) and give up after
`RetryPolicy.budget_seconds`; the caller then sees the last error (RegistryUnavailable).
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)

# How many times each kind of failure was retried in this process (for tests and diagnostics;
# the client does not log, so a notebook is not flooded during an outage).
RETRIED: Counter[str] = Counter()

T = TypeVar("T")
RETRY_STATUS = frozenset({502, 503, 504})
_answered: weakref.WeakSet[httpx.AsyncClient] = weakref.WeakSet()  # clients that got a response


@dataclass(frozen=True)
class RetryPolicy:
    budget_seconds: float = 60.0  # keep trying one operation this long (a restart takes seconds)
    first_delay: float = 0.1
    max_delay: float = 2.0
    first_contact_seconds: float = 3.0  # the budget until the registry has answered once

    def delays(self) -> Iterator[float]:
        """Jittered exponential delays, forever; the caller stops at the budget."""
        delay = self.first_delay
        while True:
            yield delay * random.uniform(0.5, 1.5)
            delay = min(delay * 2, self.max_delay)


DEFAULT_POLICY = RetryPolicy()


def _retry_after(resp: httpx.Response, cap: float) -> float | None:
    value = resp.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        return None


async def send(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    fresh: Callable[[], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """`http.request(...)`, re-sent on transport errors and 502/503/504 until the budget is
    spent. Returns the last response (possibly still a 503), or raises the last TransportError.
    `fresh()` supplies arguments that cannot be sent twice (a streamed body), per attempt."""
    start = time.monotonic()
    for delay in policy.delays():
        try:
            resp = await http.request(method, path, **kwargs, **(fresh() if fresh else {}))
        except httpx.TransportError as exc:
            budget = policy.budget_seconds if http in _answered else policy.first_contact_seconds
            if time.monotonic() + delay > start + budget:
                raise
            RETRIED[type(exc).__name__] += 1
        else:
            if http not in _answered:  # (adding builds a weak reference each time)
                _answered.add(http)
            if resp.status_code not in RETRY_STATUS:
                return resp
            wait = _retry_after(resp, policy.max_delay)
            delay = delay if wait is None else wait
            if time.monotonic() + delay > start + policy.budget_seconds:
                return resp
            RETRIED[f"http {resp.status_code}"] += 1
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - delays() never ends


def kafka_retriable(exc: BaseException) -> bool:
    """A broker that is down, restarting or slow - not a refused message (too large, bad topic,
    not authorised), which would fail the same way again. A producer that could not even start
    is wrapped by the client in RegistryUnavailable; its cause decides."""
    if not isinstance(exc, KafkaError) and isinstance(exc.__cause__, KafkaError):
        exc = exc.__cause__
    if not isinstance(exc, KafkaError):
        return False
    transient = (KafkaTimeoutError, KafkaConnectionError, RequestTimedOutError, NodeNotReadyError)
    return isinstance(exc, transient) or bool(getattr(exc, "retriable", False))


async def call(
    fn: Callable[[], Awaitable[T]],
    *,
    retry_if: Callable[[BaseException], bool],
    policy: RetryPolicy = DEFAULT_POLICY,
    what: str = "operation",
) -> T:
    """Await `fn()` again (a fresh call each time) while it fails with an error `retry_if`
    accepts, until the budget is spent; then the last error propagates."""
    deadline = time.monotonic() + policy.budget_seconds
    for delay in policy.delays():
        try:
            return await fn()
        except Exception as exc:
            if not retry_if(exc) or time.monotonic() + delay > deadline:
                raise
            RETRIED[f"{what}: {type(exc).__name__}"] += 1
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
