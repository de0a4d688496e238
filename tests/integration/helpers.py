"""Helpers for integration tests: raw publishing (as a misbehaving client would) and outcomes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

COMMANDS = "opsml.commands"
EVENTS = "opsml.events"


async def publish_raw(
    bootstrap: str, *values: bytes | None, key: bytes = b"run/demo/churn"
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks="all",
        max_request_size=4_194_304,
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(COMMANDS, value, key=key, partition=0)
    finally:
        await producer.stop()


def dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


async def outcome(url: str, command_id: str | UUID, wait: float = 20) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=wait + 10) as http:
        return await http.get(f"/api/v1/commands/{command_id}", params={"wait": wait})


async def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every message of a 1-partition topic, read until the high-water mark."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    out: list[dict[str, Any]] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        empty = 0
        while empty < 3:
            got = await consumer.getmany(tp, timeout_ms=300)
            recs = got.get(tp, [])
            if not recs:
                hw = consumer.highwater(tp)
                if hw is not None and (not out or out[-1]["_offset"] + 1 >= hw):
                    empty += 1
                continue
            for r in recs:
                try:
                    body = orjson.loads(r.value)
                except orjson.JSONDecodeError:
                    body = {"_raw": r.value}
                if not isinstance(body, dict):
                    body = {"_raw": body}
                body["_offset"] = r.offset
                out.append(body)
    finally:
        await consumer.stop()
    return out


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Query the test's database directly (what the projection really wrote)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()
