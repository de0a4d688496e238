"""The event loop the long-running processes (worker, API, `opsml dev`) and the sync client's
private loop run on: uvloop where it is installed (a dependency on Linux and macOS), else
asyncio's own. (The async client runs on whatever loop its caller runs.)

uvloop's transports and selector are C: measured on the 2-core benchmark machine, the API's CPU
per read fell by about a third (a 100-card page 1.54 -> 1.00 ms, latest-of-a-name 0.68 -> 0.46
ms; docs/performance.md). Set `OPSML_EVENT_LOOP=asyncio` to run on asyncio's loop instead (to
rule the loop out when chasing a problem)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default loop."""
    if os.environ.get("OPSML_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def uvicorn_loop() -> str:
    """uvicorn's `loop` setting matching `loop_factory`."""
    return "uvloop" if loop_factory() is not None else "asyncio"


def new_event_loop() -> asyncio.AbstractEventLoop:
    factory = loop_factory()
    return factory() if factory is not None else asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
