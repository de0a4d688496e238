"""Messaging: the one way a registry process opens a partition reader, starts a Kafka client and
asks a partition where its log ends.

Every reader of the registry's topics keeps its own position (the sequencer in Postgres, a
subscriber in its group's committed offset, a replay nowhere): partition 0 is `assign()`ed, never
joined through a consumer group (Tansu takes about half the session timeout to join one), nothing
is committed automatically, and a position outside the log is an error rather than a silent jump
to either end (`auto_offset_reset="none"`: a missing offset is lost data).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, OffsetOutOfRangeError

from registry_core.errors import BrokerDataLost, BrokerUnreachable
from registry_core.settings import Settings

# How long the high-water probe waits for a fetch response before it calls the broker silent.
HIGH_WATER_WAIT_S = 10.0
_PROBE_TIMEOUT_MS = 100


def partition_consumer(
    bootstrap_servers: str,
    *,
    fetch_max_wait_ms: int,
    client_kwargs: dict[str, Any] | None = None,
    group_id: str | None = None,
    request_timeout_ms: int | None = None,
    **extra: Any,
) -> AIOKafkaConsumer:
    """A consumer for `assign()`: offsets kept by the caller, a missing offset an error. A
    `group_id` only names where `commit()` stores a position (no group join)."""
    if request_timeout_ms is not None:
        extra["request_timeout_ms"] = request_timeout_ms
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=fetch_max_wait_ms,
        **extra,
        **(client_kwargs or {}),
    )


def consumer_for(settings: Settings, **extra: Any) -> AIOKafkaConsumer:
    """A server-side partition reader (worker, replay) on the settings' broker, security and
    timeouts: a fetch that goes unanswered for `kafka_request_timeout_ms` is retried (reads are
    idempotent) instead of stalling for aiokafka's 40 s."""
    return partition_consumer(
        settings.kafka_bootstrap_servers,
        fetch_max_wait_ms=extra.pop("fetch_max_wait_ms", settings.kafka_fetch_max_wait_ms),
        client_kwargs=settings.kafka_client_kwargs(),
        request_timeout_ms=extra.pop("request_timeout_ms", settings.kafka_request_timeout_ms),
        **extra,
    )


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs its own ERROR line for a refused connection; BrokerUnreachable says it."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def start_client(
    client: AIOKafkaConsumer | AIOKafkaProducer,
    address: str,
    setting: str | None = None,
) -> None:
    """Start an aiokafka client; an unreachable broker is a BrokerUnreachable naming the address
    and the setting that holds it (one line for an operator, not a traceback)."""
    try:
        with _quiet_aiokafka():
            await client.start()
    except KafkaConnectionError as exc:
        await client.stop()
        raise BrokerUnreachable(
            f"cannot reach Kafka at {address} (the setting"
            f" {setting or BrokerUnreachable.setting}): {exc}",
            address=address,
            setting=setting,
        ) from None


async def check_reachable(settings: Settings) -> None:
    """Fail fast, in one line, when no broker answers at the configured address (before calls
    that would retry for a minute, such as `ensure_topics`)."""
    # (a producer: a consumer stopped straight after its start can raise CancelledError)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_kwargs()
    )
    await start_client(producer, settings.kafka_bootstrap_servers)
    await producer.stop()


async def high_water(
    consumer: AIOKafkaConsumer, tp: TopicPartition, *, probe: int = 0, wait_s: float | None = None
) -> int:
    """The partition's high-water mark, from a fetch response at offset `probe` of an assigned
    `consumer` (which is left positioned there). Tansu answers ListOffsets `latest` wrongly, so
    `end_offsets()`/`seek_to_end()` are not used. Offset 0 of an empty topic is valid and reports
    0; a `probe` past the end raises OffsetOutOfRangeError. A broker that sends no fetch
    response within `wait_s` is BrokerUnreachable."""
    wait_s = HIGH_WATER_WAIT_S if wait_s is None else wait_s
    consumer.seek(tp, probe)
    for _ in range(max(1, int(wait_s * 1000 / _PROBE_TIMEOUT_MS))):
        await consumer.getmany(tp, timeout_ms=_PROBE_TIMEOUT_MS, max_records=1)
        hw = consumer.highwater(tp)
        if hw is not None:
            return int(hw)
    raise BrokerUnreachable(f"no fetch response from {tp.topic} after {wait_s:g} s")


async def log_end(settings: Settings, topic: str, *, probe: int = 0) -> int:
    """`high_water` of partition 0 of `topic`, on a consumer of its own. Unreachable (no
    connection, or no fetch response): BrokerUnreachable naming the address and the setting."""
    async with _assigned(settings, topic) as (consumer, tp):
        try:
            return await high_water(consumer, tp, probe=probe)
        except BrokerUnreachable as exc:
            raise BrokerUnreachable(
                f"{exc}; cannot reach Kafka at {settings.kafka_bootstrap_servers} (the setting"
                f" {BrokerUnreachable.setting})?",
                address=settings.kafka_bootstrap_servers,
            ) from None


async def refuse_if_log_lost(settings: Settings, topic: str, projected: int) -> None:
    """Raise BrokerDataLost when `topic` ends below `projected`, an offset this registry already
    projected: a broker that lost its data would hand out offsets already in the archive, and a
    catch-up would silently find nothing to do. A broker that accepts the connection but sends
    no fetch response is not judged here (what follows fails on it with its own error)."""
    if projected < 0:
        return
    async with _assigned(settings, topic) as (consumer, tp):
        try:
            end = await high_water(consumer, tp, probe=projected)
        except OffsetOutOfRangeError:
            end = 0
        except BrokerUnreachable:
            return
    if end < projected + 1:
        raise BrokerDataLost(
            f"{topic} ends below offset {projected}, which this registry already projected: the"
            " broker lost its data. Stop every worker and run `opsml replay --republish` to write"
            " the Postgres archive back, then start the worker again (see docs/events.md)",
            address=settings.kafka_bootstrap_servers,
        )


@contextlib.asynccontextmanager
async def _assigned(
    settings: Settings, topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, TopicPartition]]:
    consumer = consumer_for(settings)
    await start_client(consumer, settings.kafka_bootstrap_servers)
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        yield consumer, tp
    finally:
        await consumer.stop()
