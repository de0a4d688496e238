"""`opsml dev` pieces that need no stack: the data directory's database name and identity,
server.env, the port pair for SeaweedFS's admin, and stopping children together."""

from __future__ import annotations

import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry_core.settings import Settings
from workers import dev, procs


def test_default_database_is_named_after_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = dev.default_database_url(tmp_path / "proj-a" / ".opsml")
    b = dev.default_database_url(tmp_path / "proj-b" / ".opsml")
    assert a != b
    assert a == dev.default_database_url(tmp_path / "proj-a" / ".opsml")  # stable
    # relative and absolute spellings of one directory give one database
    monkeypatch.chdir(tmp_path)
    assert dev.default_database_url(Path("proj-a/.opsml")) == a
    name = a.rsplit("/", 1)[1]
    assert re.fullmatch(r"opsml_proj_a_[0-9a-f]{8}", name), name
    assert a.startswith("postgresql://postgres@127.0.0.1:5432/")
    # any directory name gives a valid identifier of at most 63 bytes
    odd = dev.default_database_url(tmp_path / ("Ü ber;DROP " * 10)).rsplit("/", 1)[1]
    assert re.fullmatch(r"opsml_[a-z0-9_]+_[0-9a-f]{8}", odd) and len(odd) <= 63, odd
    assert a != dev.DEFAULT_DATABASE_URL


def test_identity_is_made_once_and_kept(tmp_path: Path) -> None:
    first = dev.data_dir_identity(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert dev.data_dir_identity(tmp_path) == first
    (tmp_path / "other").mkdir()
    assert dev.data_dir_identity(tmp_path / "other") != first
    (tmp_path / dev.IDENTITY_FILE).write_text("not an id\n")
    with pytest.raises(dev.DevStackError, match="does not hold an identity"):
        dev.data_dir_identity(tmp_path)


def test_server_env_is_private_and_loads_as_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / dev.SERVER_ENV
    old.write_text("stale\n")
    old.chmod(0o644)
    env = {
        "OPSML_DATABASE_URL": "postgresql://postgres:p%40ss@127.0.0.1:5432/opsml_x_1234abcd",
        "OPSML_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:45678",
        "OPSML_COMMANDS_TOPIC": "opsml.commands",
        "OPSML_EVENTS_TOPIC": "opsml.events",
        "OPSML_STORAGE_URI": "s3://opsml-artifacts/",
        "OPSML_S3_ENDPOINT_URL": "http://127.0.0.1:39000",
        "AWS_ACCESS_KEY_ID": "opsml-abcd",
        "AWS_SECRET_ACCESS_KEY": "se=cret/+x",
    }
    path = dev.write_server_env(tmp_path, env)
    assert path == old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            loaded[key] = value
    assert loaded == env
    for key, value in loaded.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.dsn == env["OPSML_DATABASE_URL"]
    assert s.kafka_bootstrap_servers == "127.0.0.1:45678"
    assert s.storage_uri == "s3://opsml-artifacts/"
    assert s.s3_endpoint_url == "http://127.0.0.1:39000"
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(dev.DevStackError, match="line break"):
        dev.write_server_env(tmp_path, {"OPSML_X": "a\nb"})


def test_free_port_pair_is_offset_and_free() -> None:
    low, high = procs.free_port_pair(10_000)
    assert high == low + 10_000 and high < 32_768
    for port in (low, high):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    with pytest.raises(ValueError):
        procs.free_port_pair(40_000)


def _child(code: str) -> subprocess.Popen[bytes]:
    return procs.spawn([sys.executable, "-c", code])


IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True);"
    " time.sleep(60)"
)
EXITS_ON_INT = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    pass"


def test_stop_all_stops_children_together_and_kills_stragglers() -> None:
    stubborn = [_child(IGNORES_TERM) for _ in range(3)]
    polite = _child(EXITS_ON_INT)
    time.sleep(1.0)  # let the handlers be installed
    started = time.monotonic()
    killed = procs.stop_all(
        [(p, signal.SIGTERM) for p in stubborn] + [(polite, signal.SIGINT)],
        timeout=1.0,
    )
    took = time.monotonic() - started
    # one grace period for all of them, not one each
    assert took < 2.0, took
    assert sorted(p.pid for p in killed) == sorted(p.pid for p in stubborn)
    assert all(p.poll() is not None for p in [*stubborn, polite])
    assert polite.returncode == 0  # SIGINT ended it by itself


def _stamps_on_int(path: Path) -> str:
    """A child that writes when it got SIGINT, then exits."""
    return (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(path)!r}, 'w').write(repr(time.time()))\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, bye)\n"
        "time.sleep(60)\n"
    )


@pytest.mark.parametrize("user_exits", [True, False], ids=["user-exits", "user-stuck"])
def test_stop_all_signals_services_after_their_users(tmp_path: Path, user_exits: bool) -> None:
    """The broker is signalled once the worker is gone (not while it may be mid-produce), or
    after `services_wait` when the worker does not go."""
    stamp = tmp_path / "service-signalled"
    user = _child(
        "import signal, sys, time\n"
        + (
            "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.3), sys.exit(0)))\n"
            if user_exits
            else "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        )
        + "time.sleep(60)\n"
    )
    service = _child(_stamps_on_int(stamp))
    time.sleep(1.0)
    started = time.time()
    killed = procs.stop_all(
        [(user, signal.SIGTERM)],
        2.0,
        services=[(service, signal.SIGINT)],
        users=[user],
        services_wait=0.8,
    )
    signalled = float(stamp.read_text()) - started
    if user_exits:
        assert 0.25 <= signalled < 0.7, signalled  # right after the user's 0.3 s
        assert killed == []
    else:
        assert 0.75 <= signalled < 1.2, signalled  # at services_wait
        assert killed == [user]
    assert service.returncode == 0
