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
        assert sock.family in (socket.AF_INET, socket.AF_INET6)  # the test database is on TCP
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0  # not by default
        await db.keep_alive(conn)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        for name, value in (
            ("TCP_KEEPIDLE", db.KEEPALIVE_IDLE_S),
            ("TCP_KEEPINTVL", db.KEEPALIVE_INTERVAL_S),
            ("TCP_KEEPCNT", db.KEEPALIVE_COUNT),
        ):
            option = getattr(socket, name, None)  # Linux has all three
            if option is not None:
                assert sock.getsockopt(socket.IPPROTO_TCP, option) == value, name
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
