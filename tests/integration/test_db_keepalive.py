"""TCP keepalives on the connections that wait rather than query (registry_core.persistence.db
.keep_alive): set on this side's socket and asked of the server for its side."""

from __future__ import annotations

import socket

import pytest

from registry_core.persistence import db

pytestmark = pytest.mark.integration


async def test_both_ends_of_a_waiting_connection_probe_the_other(database_url: str) -> None:
    conn = await db.connect(database_url)
    try:
        sock = conn._transport.get_extra_info("socket")
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(
            socket, "TCP_KEEPIDLE"
        ):
            pytest.skip("keepalive options are checked on Linux, over TCP")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0  # not by default
        await db.keep_alive(conn)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == db.KEEPALIVE_IDLE_S
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == (
            db.KEEPALIVE_INTERVAL_S
        )
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == db.KEEPALIVE_COUNT
        server = await conn.fetchrow(
            "SELECT current_setting('tcp_keepalives_idle') AS idle,"
            " current_setting('tcp_keepalives_interval') AS interval,"
            " current_setting('tcp_keepalives_count') AS count"
        )
        assert dict(server) == {
            "idle": str(db.KEEPALIVE_IDLE_S),
            "interval": str(db.KEEPALIVE_INTERVAL_S),
            "count": str(db.KEEPALIVE_COUNT),
        }
        assert await conn.fetchval("SELECT 1") == 1  # the connection works as before
    finally:
        await conn.close()
