"""Seed a long event log fast: `CardRegistered` events published straight to `opsml.events`,
byte for byte what the sequencer's `codec.encode` writes (checked on the first events).

Registering a million cards through the worker takes ~18 min on 2 CPUs; publishing their events
takes well under a minute. The events are then projected into the live tables by the *worker's own
start-up catch-up* (the live projection: it projects every event between its tracked offset and
its new epoch marker), so a later `opsml replay --verify-only` compares the replay's bulk path
with tables the live projection built. The events carry no command offset (no command exists).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from registry_core.contracts.codec import decode_event, encode
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.events import (
    OPSML_NAMESPACE,
    CardRegistered,
    event_id_for,
    uid_for_command,
)

# Sentinels that cannot occur in the rest of the encoded event.
_S = {
    "event_id": "00000000-0000-4000-8000-0000000000e1",
    "command_id": "00000000-0000-4000-8000-0000000000c1",
    "uid": "00000000-0000-4000-8000-0000000000a1",
    "ts": "2000-01-01T00:00:00.000001Z",
    "name": "@@NAME@@",
    "version": "1.999999.0",
    "tag": "@@TAG@@",
}


def _template(space: str, epoch: int) -> tuple[list[str], list[str]]:
    ts = datetime.fromisoformat(_S["ts"])
    card = CardRecord(
        uid=uuid.UUID(_S["uid"]), registry=RegistryType.RUN, space=space, name=_S["name"],
        version=_S["version"], card_type="RunCard", tags={"i": _S["tag"]},
        attributes={"parameters": {}, "metrics": [], "datacard_uids": [], "modelcard_uids": []},
        created_at=ts, command_id=uuid.UUID(_S["command_id"]), actor="bench",
    )  # fmt: skip
    ev = CardRegistered(
        event_id=uuid.UUID(_S["event_id"]), command_id=uuid.UUID(_S["command_id"]),
        occurred_at=ts, epoch=epoch, command_offset=None, card=card,
    )  # fmt: skip
    text = encode(ev).decode()
    hits = []
    for key, value in _S.items():
        at = text.find(value)
        while at >= 0:
            hits.append((at, key, value))
            at = text.find(value, at + len(value))
    parts: list[str] = []
    order: list[str] = []
    pos = 0
    for at, key, value in sorted(hits):
        parts.append(text[pos:at])
        order.append(key)
        pos = at + len(value)
    parts.append(text[pos:])
    return parts, order


def _fmt(b: bytes | bytearray) -> str:
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _uuid5(namespace: bytes, name: str) -> str:
    """uuid.uuid5 without the UUID objects (the first events are checked against the real
    thing: event_id_for / uid_for_command)."""
    b = bytearray(hashlib.sha1(namespace + name.encode(), usedforsecurity=False).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return _fmt(b)


def registration_events(
    n: int, *, epoch: int, space: str = "bench", prefix: str = "w5-n", per_name: int = 100
) -> list[bytes]:
    """n events over n // per_name names (round-robin), versions 1.0.0, 1.1.0, ... per name."""
    parts, order = _template(space, epoch)
    names = max(1, n // per_name)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ns = OPSML_NAMESPACE.bytes
    rnd = os.urandom(16 * n)
    out: list[bytes] = []
    second = ""
    for i in range(n):
        b = bytearray(rnd[16 * i : 16 * i + 16])
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        cid = _fmt(b)
        if i % 1000 == 0:
            second = (base + timedelta(seconds=i // 1000)).strftime("%Y-%m-%dT%H:%M:%S")
        values = {
            "event_id": _uuid5(ns, f"event:{cid}:{epoch}:0"),
            "command_id": cid,
            "uid": _uuid5(ns, f"card:{cid}"),
            # 1 ms apart, never a whole second (pydantic then writes the 6-digit fraction)
            "ts": f"{second}.{(i % 1000) * 1000 + 1:06d}Z",
            "name": f"{prefix}{i % names}",
            "version": f"1.{i // names}.0",
            "tag": str(i),
        }
        seq = [parts[0]]
        for key, part in zip(order, parts[1:], strict=True):
            seq.append(values[key])
            seq.append(part)
        out.append("".join(seq).encode())
    for raw in out[:3]:  # exactly what the sequencer would have written
        ev = decode_event(raw)
        assert encode(ev) == raw, raw
        assert isinstance(ev, CardRegistered)
        assert ev.event_id == event_id_for(ev.command_id, epoch)
        assert ev.card.uid == uid_for_command(ev.command_id)
    return out


async def publish(bootstrap: str, topic: str, values: list[bytes], chunk: int = 20_000) -> float:
    """Publish to partition 0; returns seconds."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks=1,
        linger_ms=20,
        max_batch_size=1_048_576,
        max_request_size=8_388_608,
    )
    await producer.start()
    t0 = time.perf_counter()
    try:
        for i in range(0, len(values), chunk):
            futures = [await producer.send(topic, v, partition=0) for v in values[i : i + chunk]]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - t0
