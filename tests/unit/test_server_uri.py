"""Which registry OPSML_TRACKING_URI names (issue 17): http(s) is a client registry, a Postgres
URI a server registry, anything else a clear error - and a database user is never a token."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from client import AsyncCardRegistry, CardRegistry
from client.http import split_token
from client.http_transport import HttpTransport
from client.server_transport import ServerTransport
from client.server_uri import UnsupportedTrackingUri, kind_of, shown
from registry_core.persistence.server_settings import storage_location


@pytest.mark.parametrize(
    "uri",
    ["mysql://root:hunter2@db:3306/opsml", "sqlite:///opsml.db", "ftp://h/x",
     "127.0.0.1:8000", "mssql+pyodbc://u:hunter2@h/db", ""],
)  # fmt: skip
def test_other_schemes_are_refused_naming_what_is_supported(uri: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(UnsupportedTrackingUri) as err:
        CardRegistry("run", tracking_uri=uri or "   ")
    assert time.monotonic() - t0 < 1  # at once, no connection tried
    text = str(err.value)
    assert "http://" in text and "https://" in text and "postgresql://" in text
    assert "hunter2" not in text and "root" not in text
    assert isinstance(err.value, ValueError)


def test_the_environment_variable_chooses_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSML_TRACKING_URI", "sqlite:///registry.db")
    with pytest.raises(UnsupportedTrackingUri, match="'sqlite'"):
        AsyncCardRegistry("run")
    monkeypatch.setenv("OPSML_TRACKING_URI", "postgres://app:pw@db.internal:5432/opsml")
    reg = AsyncCardRegistry("run")
    assert isinstance(reg.transport, ServerTransport)
    assert reg.tracking_uri == "postgres://db.internal:5432/opsml"  # no user, no password
    assert ServerTransport(" POSTGRESQL://h/db ").dsn == "postgresql://h/db"
    monkeypatch.setenv("OPSML_TRACKING_URI", "https://opsml_abc@registry.example.internal")
    assert isinstance(AsyncCardRegistry("run").transport, HttpTransport)


def test_kinds() -> None:
    assert kind_of("http://127.0.0.1:8000") == kind_of("HTTPS://h") == "http"
    assert kind_of("postgresql://u@h/db") == kind_of("postgres://h/db") == "server"


def test_an_http_uri_with_user_info_is_parsed_as_before() -> None:
    assert split_token("https://opsml_1_abc@registry.example.internal/") == (
        "https://registry.example.internal",
        "opsml_1_abc",
    )
    assert split_token("http://:opsml_2_x@h:8000") == ("http://h:8000", "opsml_2_x")
    assert split_token("http://127.0.0.1:8000") == ("http://127.0.0.1:8000", None)


def test_a_database_uri_is_never_a_token() -> None:
    """(Before issue 17 the `postgres@` of such a URI was sent as an API token.)"""
    with pytest.raises(UnsupportedTrackingUri, match="database URI") as err:
        split_token("postgresql://postgres:pw@127.0.0.1:5432/opsml")
    assert "pw" not in str(err.value).replace("postgresql", "")
    with pytest.raises(UnsupportedTrackingUri):
        HttpTransport("postgres://postgres@127.0.0.1/opsml")
    assert shown("postgresql://u:p@h:1/d") == "postgresql://h:1/d"


def test_a_local_store_is_recorded_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage_location(".opsml/artifacts") == str(tmp_path / ".opsml" / "artifacts")
    assert storage_location("file:///srv/a") == "/srv/a"
    assert storage_location("s3://bucket/prefix") == "s3://bucket/prefix"
