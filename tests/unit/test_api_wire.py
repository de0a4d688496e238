"""workers/api/wire.py: writes made in one loop turn leave in one transport write."""

from __future__ import annotations

import asyncio
from typing import Any

from workers.api.wire import CoalescingTransport


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


async def test_one_write_per_loop_turn() -> None:
    rec = Recorder()
    t = CoalescingTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    t.write(b"{}")
    assert rec.writes == [] and t.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert rec.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"next")
    await asyncio.sleep(0)
    assert rec.writes[1:] == [b"next"]
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest passes through


async def test_close_flushes_and_abort_drops() -> None:
    rec = Recorder()
    t = CoalescingTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"last words")
    t.close()
    assert rec.writes == [b"last words"] and rec.closed
    await asyncio.sleep(0)
    assert rec.writes == [b"last words"]  # the scheduled flush finds nothing left

    rec2 = Recorder()
    t2 = CoalescingTransport(rec2, asyncio.get_running_loop())  # type: ignore[arg-type]
    t2.write(b"dropped")
    t2.abort()
    await asyncio.sleep(0)
    assert rec2.writes == [] and rec2.aborted
