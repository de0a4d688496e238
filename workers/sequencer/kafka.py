"""The sequencer's Kafka clients: the commands reader and the events producer, as it tunes them.

Readers are registry_core.messaging's partition readers (partition 0 `assign()`ed, offsets kept
by us - the command position commits in the Postgres transaction that projects a batch - and a
position outside the log an error, never a reset). The sequencer reads commands in batches of
the largest commands, and publishes a batch's events as one record batch.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from registry_core.messaging import consumer_for
from registry_core.settings import Settings

# A batch's events go out as one record batch, so one produce round trip (aiokafka sends one
# request at a time per broker, with one record batch per partition): up to 512 KiB, not 16 KiB.
EVENT_BATCH_BYTES = 512 * 1024


def reader(settings: Settings) -> AIOKafkaConsumer:
    """A reader of the events log (catch-up, the gaps a retried produce left)."""
    return consumer_for(settings)


def commands_reader(settings: Settings) -> AIOKafkaConsumer:
    """A reader for the commands topic that takes a batch of the largest commands at once."""
    return consumer_for(
        settings,
        max_partition_fetch_bytes=max(settings.max_command_bytes * 2, 1_048_576),
        fetch_max_bytes=max(settings.max_command_bytes * 4, 52_428_800),
    )


def events_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=False,  # not supported by Tansu; not needed (see docs)
        linger_ms=0,
        max_batch_size=EVENT_BATCH_BYTES,
        max_request_size=max(settings.max_command_bytes * 2, 1_048_576),
        request_timeout_ms=settings.kafka_request_timeout_ms,
        **settings.kafka_client_kwargs(),
    )
