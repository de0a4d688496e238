"""The client refuses, before anything is sent, what the registry would refuse for the request's
own sake (issue 20's rough edges): a version written on the card is honoured like
`register_card(version=...)`; a malformed version, a non-UUID uid and an unregistered card in a
query are clear errors. The registries here point at a port nothing listens on: a check that
needed the registry would fail with RegistryUnavailable instead."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest

from client import AsyncCardRegistry, CardRegistry, InvalidCommand, InvalidQuery, RunCard
from client import commands as cmd
from registry_core.domain import cards as domain
from registry_core.domain.cards import RegistryType
from registry_core.domain.errors import InvalidVersion
from registry_core.settings import ClientSettings


@pytest.fixture
def nowhere() -> Iterator[str]:
    """A loopback URL whose port nothing listens on (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _settings() -> ClientSettings:
    return ClientSettings(register_timeout_seconds=2.0)


def _register(card: domain.Card, version_type: str = "minor", version: str | None = None,
              **kw: str) -> str | None:  # fmt: skip
    command = cmd.registration(card, RegistryType.RUN, domain.RunCard, version_type, version, **kw)
    return command.version


def test_a_version_written_on_the_card_is_the_version_asked_for() -> None:
    assert _register(RunCard(space="demo", name="churn", version="3.0.0")) == "3.0.0"
    assert _register(domain.RunCard(space="demo", name="churn", version="3.0.0")) == "3.0.0"
    assert _register(RunCard(space="demo", name="churn", version="2"), "patch") == "2"
    assert _register(RunCard(space="demo", name="churn"), version="3.0.0") == "3.0.0"
    assert _register(RunCard(space="demo", name="churn")) is None
    # the same version in both places is one request
    assert _register(RunCard(space="demo", name="churn", version="3.0.0"), version="3.0.0") == (
        "3.0.0"
    )


def test_a_version_on_the_card_and_a_different_one_given_are_refused() -> None:
    card = RunCard(space="demo", name="churn", version="3.0.0")
    with pytest.raises(InvalidCommand, match=r"card says version '3\.0\.0'.*version='4\.0\.0'"):
        _register(card, version="4.0.0")


@pytest.mark.parametrize(
    ("version_type", "version", "kw", "words"),
    [
        ("minor", "abc", {}, "'abc' is not a semantic version"),
        ("minor", "v1.0", {}, "not a semantic version"),
        ("major", "2", {}, "cannot stay within line '2'"),
        ("pre", None, {"pre_tag": "r.c"}, "pre_tag 'r.c'"),
        ("build", None, {"build_tag": "a b"}, "build_tag 'a b'"),
        ("minor", "1.0.99999999999", {}, "at most"),
    ],
)
def test_a_malformed_version_request_is_refused_on_the_client(
    version_type: str, version: str | None, kw: dict[str, str], words: str
) -> None:
    with pytest.raises(InvalidVersion, match=words):
        _register(RunCard(space="demo", name="churn"), version_type, version, **kw)
    # written on the card, the same
    if version is not None:
        with pytest.raises(InvalidVersion, match=words):
            _register(RunCard(space="demo", name="churn", version=version), version_type, **kw)


async def test_the_registry_refuses_them_without_a_round_trip(nowhere: str) -> None:
    async with AsyncCardRegistry("run", tracking_uri=nowhere, settings=_settings()) as reg:
        with pytest.raises(InvalidVersion, match="'abc' is not a semantic version"):
            await reg.register_card(RunCard(space="demo", name="churn"), version="abc")
        with pytest.raises(InvalidVersion, match="'abc'"):
            await reg.register_card(RunCard(space="demo", name="churn", version="abc"))
        with pytest.raises(InvalidCommand, match="card says version"):
            await reg.register_card(RunCard(space="d", name="n", version="1.0.0"), version="2")
        with pytest.raises(InvalidVersion):
            await reg.register_cards([RunCard(space="demo", name="churn", version="x.y")])


async def test_queries_refuse_an_unregistered_card_and_a_uid_that_is_not_one(
    nowhere: str,
) -> None:
    async with AsyncCardRegistry("run", tracking_uri=nowhere, settings=_settings()) as reg:
        with pytest.raises(InvalidQuery, match="demo/churn is not registered"):
            await reg.lineage(RunCard(space="demo", name="churn"))
        with pytest.raises(InvalidQuery, match="demo/churn is not registered"):
            await reg.run_metrics([RunCard(space="demo", name="churn")])
        for call in (
            reg.lineage("not-a-uuid"),
            reg.load_card(uid="not-a-uuid"),
            reg.list_cards(uid="not-a-uuid"),
            reg.run_metrics([uuid4(), "not-a-uuid"]),
        ):
            with pytest.raises(InvalidQuery, match="'not-a-uuid' is not a card uid"):
                await call


def test_the_sync_registry_refuses_them_too(nowhere: str) -> None:
    with CardRegistry("run", tracking_uri=nowhere, settings=_settings()) as reg:
        with pytest.raises(InvalidQuery, match="is not registered"):
            reg.lineage(RunCard(space="demo", name="churn"))
        with pytest.raises(InvalidQuery, match="is not a card uid"):
            next(reg.iter_cards(uid="nope"))


def test_a_uid_as_text_or_uuid_is_taken() -> None:
    uid = uuid4()
    assert cmd.uid_of(uid) == uid
    assert cmd.uid_of(str(uid)) == uid
    assert cmd.uid_of(str(uid).upper()) == uid
    registered = RunCard(space="demo", name="churn", uid=uid, version="1.0.0")
    assert cmd.uid_of(registered) == uid
    assert isinstance(cmd.uid_of(str(uid)), UUID)


@pytest.mark.parametrize(
    ("tags", "words"),
    [
        ({"k" * 300: "v"}, [repr("k" * 37 + "..."), "300 characters", "limit of 256"]),
        ({"stage": "x" * 257}, ["value of tag 'stage'", "257 characters", "limit of 256"]),
        ({"": "v"}, ["tag key is empty", "1-256"]),
        ({f"k{i}": "v" for i in range(65)}, ["at most 64 tags", "got 65"]),
    ],
    ids=["long-key", "long-value", "empty-key", "too-many"],
)
def test_the_tag_error_names_the_key_and_the_limit(tags: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        RunCard(space="demo", name="churn", tags=tags)
    for word in words:
        assert word in str(info.value), str(info.value)
