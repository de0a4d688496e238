"""`opsml dev` holds the API's port while it picks the other services' ports, so a port picked
free by the caller (as the e2e test does) cannot be handed to SeaweedFS or Tansu."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from workers import procs
from workers.dev import DevStack, DevStackError


async def test_the_api_port_is_held_while_the_services_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (port,) = procs.free_ports(1)
    stack = DevStack(port=port, data_dir=tmp_path)
    seen: dict[str, object] = {}

    async def services() -> None:
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
            seen["bound"] = True
        except OSError:
            seen["bound"] = False
        finally:
            probe.close()
        seen["picked"] = set(procs.free_ports(200))

    async def child(role: str) -> None:
        seen["api_started_free"] = not procs.port_open("127.0.0.1", port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", port))  # released before the API starts
        probe.close()

    async def ready(timeout: float) -> None:
        return None

    monkeypatch.setattr(stack, "_start_services", services)
    monkeypatch.setattr(stack, "_start_child", child)
    monkeypatch.setattr(stack, "_wait_ready", ready)
    await stack.start()
    assert seen["bound"] is False, "the API's port was free while the services started"
    assert port not in seen["picked"]  # type: ignore[operator]
    assert seen["api_started_free"] is True


async def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: port_open does not see it
    try:
        port = holder.getsockname()[1]
        with pytest.raises(DevStackError, match="pass --port"):
            await DevStack(port=port, data_dir=tmp_path).start()
    finally:
        holder.close()
