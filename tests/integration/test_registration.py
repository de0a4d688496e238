"""Client -> Kafka -> sequencer -> Postgres -> API, with real processes."""

from __future__ import annotations

import time

import asyncpg
import httpx
import pytest

from client import (
    AlreadyRegistered,
    AsyncCardRegistry,
    CardNotFound,
    CardRegistry,
    DataCard,
    ModelCard,
    RunCard,
    WrongRegistry,
)
from registry_core.domain.errors import InvalidCommand, VersionConflict
from tests.conftest import Stack
from tests.integration.helpers import COMMANDS, dumps, outcome, publish_raw, read_topic
from tests.support.wire import command

pytestmark = pytest.mark.integration


async def test_three_sequential_registrations(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        versions = []
        for _ in range(3):
            card = await reg.register_card(RunCard(space="demo", name="churn"))
            assert card.uid is not None and card.created_at is not None
            versions.append(card.version)
        assert versions == ["1.0.0", "1.1.0", "1.2.0"]
        listed = await reg.list_cards(space="demo", name="churn")
        assert [c.version for c in listed] == ["1.2.0", "1.1.0", "1.0.0"]
        assert all(isinstance(c, RunCard) for c in listed)


async def test_version_types_and_read_your_writes(stack: Stack) -> None:
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        a = await reg.register_card(ModelCard(space="s", name="m", framework="sklearn"))
        b = await reg.register_card(ModelCard(space="s", name="m"), version_type="major")
        c = await reg.register_card(ModelCard(space="s", name="m"), version_type="patch")
        d = await reg.register_card(ModelCard(space="s", name="m"), version="7.1.3")
        assert [a.version, b.version, c.version, d.version] == ["1.0.0", "2.0.0", "2.0.1", "7.1.3"]
        with pytest.raises(VersionConflict, match="already registered"):
            await reg.register_card(ModelCard(space="s", name="m"), version="7.1.3")
        # read-your-writes: the card is visible as soon as register_card returns
        loaded = await reg.load_card(uid=a.uid)
        assert isinstance(loaded, ModelCard) and loaded.framework == "sklearn"
        latest = await reg.load_card(space="s", name="m")
        assert latest.version == "7.1.3"
        exact = await reg.load_card(space="s", name="m", version="2.0.0")
        assert exact.uid == b.uid
        with pytest.raises(CardNotFound):
            await reg.load_card(space="s", name="nope")


def test_sync_registry_matches_the_issue_snippet(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSML_TRACKING_URI", stack.url)
    reg = CardRegistry("run")
    try:
        card = RunCard(space="demo", name="churn")
        reg.register_card(card)
        assert card.version == "1.0.0" and card.uid is not None
        assert [c.uid for c in reg.list_cards(space="demo", name="churn")] == [card.uid]
        with pytest.raises(AlreadyRegistered):
            reg.register_card(card)
    finally:
        reg.close()


async def test_bad_input_on_the_client_publishes_nothing(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        with pytest.raises(WrongRegistry, match="DataCard cannot be registered in the 'run'"):
            await reg.register_card(DataCard(space="demo", name="churn"))  # type: ignore[arg-type]
        with pytest.raises(InvalidCommand, match="version_type"):
            await reg.register_card(RunCard(space="demo", name="churn"), version_type="sideways")
        with pytest.raises(InvalidCommand, match="over the registry's"):
            await reg.register_card(
                RunCard(space="d", name="n", metadata={"blob": "x" * 2_000_000})
            )
    with pytest.raises(WrongRegistry, match="unknown registry"):
        AsyncCardRegistry("nope", tracking_uri=stack.url)
    assert await read_topic(stack.bootstrap, COMMANDS) == []


async def test_redelivered_command_yields_one_card(stack: Stack) -> None:
    body = command()
    raw = dumps(body)
    await publish_raw(stack.bootstrap, raw, raw)  # the same command_id twice
    first = await outcome(stack.url, body["command_id"])
    assert first.status_code == 200 and first.json()["status"] == "registered"
    # a third copy, after the first was projected
    await publish_raw(stack.bootstrap, raw)
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        nxt = await reg.register_card(RunCard(space="demo", name="churn"))
        cards = await reg.list_cards(space="demo", name="churn")
    assert nxt.version == "1.1.0"  # the duplicates took no version
    assert [c.version for c in cards] == ["1.1.0", "1.0.0"]
    again = await outcome(stack.url, body["command_id"])
    assert again.json()["uid"] == first.json()["uid"]
    conn = await asyncpg.connect(stack.database_url)
    try:
        n = await conn.fetchval(
            "SELECT count(*) FROM cards WHERE command_id = $1::uuid", body["command_id"]
        )
        ev = await conn.fetchval(
            "SELECT count(*) FROM event_log WHERE command_id = $1::uuid", body["command_id"]
        )
    finally:
        await conn.close()
    assert (n, ev) == (1, 1)
    assert "duplicates=1" in stack.worker_log() or "duplicates=2" in stack.worker_log()


async def test_poison_messages_never_stop_the_worker(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        before = await reg.register_card(RunCard(space="demo", name="churn"))
    bad_name = command(name="Bad Name")
    wrong_type = command(card_type="ModelCard")
    bad_attrs = command(attributes={"parameters": "not-a-dict"})
    future = command(schema_version=99)
    oversize = command(description="x" * 1_100_000)
    await publish_raw(
        stack.bootstrap,
        b"\x00\xffnot json",
        None,
        b"[]",
        b'{"command_id": "not-a-uuid"}',
        dumps(bad_name),
        dumps(wrong_type),
        dumps(bad_attrs),
        dumps(future),
        dumps(oversize),
    )
    expected = {
        bad_name["command_id"]: ("invalid_command", "name 'Bad Name' is invalid"),
        wrong_type["command_id"]: ("wrong_registry", "cannot be registered in the 'run' registry"),
        bad_attrs["command_id"]: ("invalid_command", "parameters"),
        future["command_id"]: ("unsupported_schema_version", "not supported"),
        oversize["command_id"]: ("invalid_command", "over the 1048576-byte limit"),
    }
    for cid, (code, reason) in expected.items():
        resp = await outcome(stack.url, cid)
        body = resp.json()
        assert body["status"] == "rejected", body
        assert body["error_code"] == code and reason in body["reason"], body
    # the worker is alive, the stored card is untouched, the next registration works
    assert stack.workers[0].poll() is None
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        after = await reg.register_card(RunCard(space="demo", name="churn"))
        same = await reg.load_card(uid=before.uid)
    assert after.version == "1.1.0"
    assert same.model_dump() == before.model_dump()
    # the rejection reaches the caller through the client as a typed error, too
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        out = await reg.wait_for(wrong_type["command_id"])
        assert out.status == "rejected" and out.error_code == "wrong_registry"


async def test_wait_is_woken_by_notify_not_by_timeout(stack: Stack) -> None:
    body = command()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        pending = await http.get(f"/api/v1/commands/{body['command_id']}", params={"wait": 0.2})
        assert pending.status_code == 202 and pending.json()["status"] == "pending"
        import asyncio

        waiter = asyncio.create_task(
            http.get(f"/api/v1/commands/{body['command_id']}", params={"wait": 25})
        )
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await publish_raw(stack.bootstrap, dumps(body))
        resp = await waiter
        elapsed = time.monotonic() - t0
    assert resp.status_code == 200 and resp.json()["card"]["version"] == "1.0.0"
    assert elapsed < 5, f"the wait should end on NOTIFY, took {elapsed:.2f}s"


async def test_bulk_registration_fire_and_confirm(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        cards = [RunCard(space="bulk", name=f"n{i % 7}") for i in range(700)]
        cards.append(RunCard(space="bulk", name="n0", parameters={"x": 1}))
        outcomes = await reg.register_cards(cards)
        assert all(o.status == "registered" for o in outcomes)
        by_name: dict[str, list[str]] = {}
        for c in cards:
            assert c.version is not None and c.uid is not None
            by_name.setdefault(c.name, []).append(c.version)
        # per name: gap-free, duplicate-free, in publish order
        for name, versions in by_name.items():
            assert versions == [f"1.{i}.0" for i in range(len(versions))], name
        listed = await reg.list_cards(space="bulk", name="n3", limit=1000)
        assert len(listed) == 100 and listed[0].version == "1.99.0"


async def test_a_version_written_on_the_card_is_honoured(stack: Stack) -> None:
    """OpsML users write the version on the card; it was silently ignored (the card got the
    next minor). Now it follows register_card(version=...)'s rules."""
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        card = await reg.register_card(RunCard(space="demo", name="pinned", version="3.0.0"))
        assert card.version == "3.0.0"
        line = await reg.register_card(RunCard(space="demo", name="pinned", version="3"))
        assert line.version == "3.1.0"  # a line to bump within, as version="3" would be
        with pytest.raises(VersionConflict, match="already registered"):
            await reg.register_card(RunCard(space="demo", name="pinned", version="3.0.0"))
        same = await reg.register_card(
            RunCard(space="demo", name="pinned", version="5.0.0"), version="5.0.0"
        )
        assert same.version == "5.0.0"
        with pytest.raises(InvalidCommand, match=r"card says version '6\.0\.0'"):
            await reg.register_card(
                RunCard(space="demo", name="pinned", version="6.0.0"), version="7.0.0"
            )
        listed = [c.version for c in await reg.list_cards(space="demo", name="pinned")]
    assert listed == ["5.0.0", "3.1.0", "3.0.0"]


def test_sync_iter_cards_walks_every_page(stack: Stack) -> None:
    with CardRegistry("run", tracking_uri=stack.url) as reg:
        outcomes = reg.register_cards([RunCard(space="pages", name="p") for _ in range(7)])
        assert [o.status for o in outcomes] == ["registered"] * 7
        seen = reg.iter_cards(space="pages", name="p", limit=3)
        first = next(seen)
        assert isinstance(first, RunCard) and first.version == "1.6.0"
        rest = [c.version for c in seen]
    assert rest == [f"1.{i}.0" for i in reversed(range(6))]  # three pages, no gaps
