"""uvicorn's httptools protocol with one socket write per small response.

uvicorn writes a response's status line and headers (at `http.response.start`) and its body
(at `http.response.body`) with two `transport.write` calls: two `send()` system calls, two
TCP segments and two wake-ups of the client for every answer. In the API's profile during
sequential registrations that was the largest single cost after the idle loop (~15% of its
samples). Here the connection's transport collects what is written during one turn of the event
loop and sends it in one write at the end of that turn (`call_soon`), so a head and a body sent
back to back leave as one segment. A streamed download still goes out as it is produced: each
chunk is flushed at the end of the turn that wrote it, and flow control (pause/resume writing)
still comes from the real transport.

Used by `opsml api` (workers/cli.py) when httptools is installed (a dependency); uvicorn's own
choice otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps a transport: `write` buffers until the end of the loop turn; the rest passes
    through (closing flushes first, aborting drops the buffer)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(p) for p in self._pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, is_closing, pause_reading, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(wrapped)  # type: ignore[arg-type]
