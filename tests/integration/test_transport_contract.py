"""The client transport port's contract (client/transport.py): one abstract test case, run
against every adapter on the same kind of running stack - the HTTP one (commands to Kafka, the
rest through the API) and the server one (OPSML_TRACKING_URI = the registry's database: reads
from Postgres, outcomes by LISTEN/NOTIFY, files straight into the artifact store)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from client import AsyncCardRegistry, DataCard, Metric, ModelCard, RunCard
from client import commands as cmd
from client.errors import RegistrationTimeout
from client.http_transport import HttpTransport
from client.server_transport import ServerTransport
from client.transport import CardQuery, Transport
from registry_core.contracts.http import CommandOutcome
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import CARD_CLASS_FOR_REGISTRY, Card, RegistryType
from registry_core.domain.commands import AnyCommand, RemoveAlias, SetAlias
from registry_core.domain.errors import (
    ArtifactIntegrityError,
    CardNotFound,
    InvalidQuery,
    InvalidVersion,
    RegistryError,
    VersionConflict,
)
from tests.conftest import Stack

pytestmark = pytest.mark.integration

RUN, DATA, MODEL = RegistryType.RUN, RegistryType.DATA, RegistryType.MODEL


def _register(
    card: Card,
    registry: RegistryType,
    version: str | None = None,
    artifacts: list[ArtifactRef] | None = None,
) -> AnyCommand:
    cls = CARD_CLASS_FOR_REGISTRY[registry]
    return cmd.registration(card, registry, cls, "minor", version, artifacts=artifacts)


async def _decide(t: Transport, command: AnyCommand) -> CommandOutcome:
    """Publish and wait, the wait started first (the registry's own order)."""
    import asyncio

    waiter = asyncio.create_task(t.wait_for(command.command_id, 30))
    await t.publish(command)
    return await waiter


class TransportContract:
    """Every adapter of the port must pass these. Subclasses provide the `transport` fixture:
    an open transport to a running registry service with no cards."""

    @pytest.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        raise NotImplementedError
        yield  # (an async generator, like the subclasses' fixtures)

    async def test_config_names_the_topics_and_the_limit(self, transport: Transport) -> None:
        cfg = await transport.config()
        assert cfg.kafka.commands_topic and cfg.kafka.max_message_bytes > 0
        await transport.connect()
        assert transport.where and "@" not in transport.where

    async def test_a_registered_card_is_found_every_way(self, transport: Transport) -> None:
        data = await _decide(transport, _register(DataCard(space="c", name="d"), DATA))
        assert data.status == "registered" and data.version == "1.0.0" and data.uid is not None
        assert data.card is not None and data.card.uid == data.uid
        run = RunCard(space="c", name="r", datacard_uids=[data.uid], parameters={"lr": 0.1})
        run.log_metric("loss", 0.5, step=0)
        run.log_metric("loss", 0.25, step=1)
        ran = await _decide(transport, _register(run, RUN))
        assert ran.uid is not None

        got = await transport.get_card(ran.uid)
        assert (got.registry, got.space, got.name, got.version, got.status) == (
            RUN, "c", "r", "1.0.0", "active",
        )  # fmt: skip
        assert got.attributes["parameters"] == {"lr": 0.1}

        page = await transport.list_page(CardQuery(registry=RUN, space="c"))
        assert [r.uid for r in page.cards] == [ran.uid] and page.next_cursor is None
        assert (await transport.list_page(CardQuery(registry=DATA, name="r"))).cards == []

        down = await transport.lineage(data.uid)
        assert [(link.field, link.card.uid) for link in down.downstream] == [
            ("datacard_uids", ran.uid)
        ]
        up = await transport.lineage(ran.uid)
        assert [(link.field, link.card.uid) for link in up.upstream] == [
            ("datacard_uids", data.uid)
        ]

        metrics = await transport.run_metrics([ran.uid], None)
        assert [p.value for p in metrics.metrics[ran.uid]["loss"]] == [0.5, 0.25]
        assert metrics.parameters[ran.uid] == {"lr": 0.1}

    async def test_pages_filters_and_bulk_outcomes(self, transport: Transport) -> None:
        commands = [_register(RunCard(space="p", name="n", tags={"i": str(i)}), RUN)
                    for i in range(5)]  # fmt: skip
        await transport.publish_many(commands)
        last = await transport.wait_for(commands[-1].command_id, 30)
        assert last.version == "1.4.0"
        found = await transport.outcomes([c.command_id for c in commands] + [uuid4()])
        assert sorted(o.version or "" for o in found) == [f"1.{i}.0" for i in range(5)]
        versions: list[str] = []
        cursor = None
        while True:
            page = await transport.list_page(CardQuery(registry=RUN, name="n", limit=2,
                                                       cursor=cursor))  # fmt: skip
            versions += [r.version for r in page.cards]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert versions == [f"1.{i}.0" for i in reversed(range(5))]
        tagged = await transport.list_page(CardQuery(registry=RUN, tags={"i": "3"}))
        assert [r.version for r in tagged.cards] == ["1.3.0"]
        line = await transport.list_page(CardQuery(registry=RUN, version="^1.2"))
        assert [r.version for r in line.cards] == ["1.4.0", "1.3.0", "1.2.0"]

    async def test_update_and_delete(self, transport: Transport) -> None:
        first = await _decide(transport, _register(RunCard(space="u", name="r"), RUN))
        assert first.card is not None
        card = RunCard(space="u", name="r", uid=first.uid, version=first.version)
        card.tags = {"stage": "prod"}
        updated = await _decide(transport, cmd.update(card, RUN, RunCard))
        assert updated.status == "updated" and updated.card is not None
        assert updated.card.tags == {"stage": "prod"} and updated.card.version == "1.0.0"
        more = cmd.add_metrics(card, RUN, RunCard, [Metric(name="acc", value=0.9, step=1)])
        assert (await _decide(transport, more)).status == "updated"
        assert first.uid is not None
        got = await transport.run_metrics([first.uid], ["acc"])
        assert [p.value for p in got.metrics[first.uid]["acc"]] == [0.9]

        # aliases and the registry as of a moment (issue 18), through the port
        where = {"registry": RUN, "space": "u", "name": "r"}
        set_ = SetAlias(
            **where, command_id=uuid4(), issued_at=datetime.now(UTC), alias="prod", uid=first.uid
        )
        moved = await _decide(transport, set_)
        assert (moved.status, moved.version) == ("alias_set", "1.0.0")
        assert [a.alias for a in (await transport.aliases(RUN, "u", "r", None, None)).aliases] == [
            "prod"
        ]
        assert (await transport.alias_card(RUN, "u", "r", "prod", None)).uid == first.uid
        then = await transport.get_card(first.uid, str(first.event_offset))
        assert (then.tags, then.aliases) == ({}, [])  # before the update and the alias
        page = await transport.list_page(CardQuery(registry=RUN, space="u", as_of="0"))
        assert page.cards == []
        refused = await _decide(transport, cmd.delete(card, RUN, RunCard))
        assert (refused.status, refused.error_code) == ("rejected", "alias_in_use")
        gone = RemoveAlias(**where, command_id=uuid4(), issued_at=datetime.now(UTC), alias="prod")
        assert (await _decide(transport, gone)).status == "alias_removed"
        history = await transport.alias_history(RUN, "u", "r", None, 10)
        assert [m.action for m in history.moves] == ["removed", "set"]
        assert (
            await transport.alias_card(RUN, "u", "r", "prod", str(moved.event_offset))
        ).uid == first.uid

        deleted = await _decide(transport, cmd.delete(card, RUN, RunCard))
        assert deleted.status == "deleted"
        assert (await transport.list_page(CardQuery(registry=RUN, space="u"))).cards == []
        tomb = await transport.list_page(CardQuery(registry=RUN, space="u", include_deleted=True))
        assert [(r.version, r.status) for r in tomb.cards] == [("1.0.0", "deleted")]
        assert (await transport.get_card(first.uid)).status == "deleted"

    async def test_errors_are_the_domains(self, transport: Transport) -> None:
        unknown = uuid4()
        with pytest.raises(CardNotFound):
            await transport.get_card(unknown)
        with pytest.raises(CardNotFound):
            await transport.lineage(unknown)
        with pytest.raises(CardNotFound):
            await transport.run_metrics([unknown], None)
        with pytest.raises(InvalidVersion, match="banana"):
            await transport.list_page(CardQuery(registry=RUN, version=">=banana"))
        with pytest.raises(InvalidQuery):
            await transport.list_page(CardQuery(registry=RUN, cursor="not-a-cursor"))
        # the parameters' bounds (the API's 422s), refused by both
        east = timezone(timedelta(hours=14))
        for bad in (CardQuery(registry=RUN, limit=0), CardQuery(registry=RUN, limit=1001),
                    CardQuery(registry=RUN, max_date=datetime(1, 1, 1, tzinfo=east))):  # fmt: skip
            with pytest.raises(RegistryError):
                await transport.list_page(bad)
        with pytest.raises(RegistryError):
            await transport.run_metrics([uuid4() for _ in range(101)], None)
        with pytest.raises(RegistrationTimeout, match=str(unknown)):
            await transport.wait_for(unknown, 0.3)
        # a rejection is an outcome, with the domain's code
        await _decide(transport, _register(ModelCard(space="e", name="m"), MODEL, version="2.0.0"))
        taken = await _decide(
            transport, _register(ModelCard(space="e", name="m"), MODEL, version="2.0.0")
        )
        assert (taken.status, taken.error_code) == ("rejected", VersionConflict.code)

    async def test_artifacts_round_trip(self, transport: Transport, tmp_path: Path) -> None:
        body = os.urandom(200_000)
        sha = hashlib.sha256(body).hexdigest()
        (tmp_path / "w.bin").write_bytes(body)
        ref = ArtifactRef(path="model/w.bin", sha256=sha, size=len(body))
        assert await transport.known_artifacts(MODEL, "a", [sha]) == set()
        command = _register(ModelCard(space="a", name="m"), MODEL, artifacts=[ref])
        await transport.stage_artifacts(command.command_id, [(ref, tmp_path / "w.bin")])
        out = await _decide(transport, command)
        assert out.status == "registered" and out.card is not None
        assert [(a.path, a.sha256, a.size) for a in out.card.artifacts] == [
            ("model/w.bin", sha, len(body))
        ]
        assert await transport.known_artifacts(MODEL, "a", [sha, "0" * 64]) == {sha}
        assert await transport.known_artifacts(MODEL, "other", [sha]) == set()  # per space
        assert out.uid is not None
        paths = await transport.download_artifacts(out.uid, out.card.artifacts, tmp_path / "dl")
        assert paths == [tmp_path / "dl" / "model" / "w.bin"]
        assert paths[0].read_bytes() == body
        lying = ArtifactRef(path="model/w.bin", sha256="0" * 64, size=len(body))
        with pytest.raises(ArtifactIntegrityError):
            await transport.download_artifacts(out.uid, [lying], tmp_path / "bad")
        assert not (tmp_path / "bad" / "model" / "w.bin").exists()

    async def test_the_registry_runs_on_the_transport(
        self, transport: Transport, tmp_path: Path
    ) -> None:
        """AsyncCardRegistry needs nothing but the port (and leaves a borrowed one open)."""
        (tmp_path / "notes.txt").write_text("hello")
        async with AsyncCardRegistry("run", transport=transport) as reg:
            assert reg.tracking_uri == transport.where
            run = RunCard(space="reg", name="r")
            run.log_artifact(tmp_path / "notes.txt")
            card = await reg.register_card(run)
            assert (card.version, card.status) == ("1.0.0", "active")
            loaded = await reg.load_card(uid=card.uid)
            assert isinstance(loaded, RunCard) and loaded.uid == card.uid
            paths = await loaded.download_artifacts(str(tmp_path / "out"))
            assert [p.read_text() for p in paths] == ["hello"]
            with pytest.raises(CardNotFound):
                await reg.load_card(uid=UUID(int=1))
        # still open: the registry did not own it
        assert (await transport.get_card(card.uid)).version == "1.0.0"  # type: ignore[arg-type]


class TestHttpTransport(TransportContract):
    @pytest.fixture
    async def transport(self, stack: Stack) -> AsyncIterator[Transport]:
        t = HttpTransport(stack.url)
        try:
            yield t
        finally:
            await t.aclose()


class TestServerTransport(TransportContract):
    @pytest.fixture
    async def transport(self, stack: Stack) -> AsyncIterator[Transport]:
        t = ServerTransport(stack.database_url)
        try:
            yield t
        finally:
            await t.aclose()
