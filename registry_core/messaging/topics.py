"""Messaging: the registry's topics, created with one partition each before any client uses them."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

log = structlog.get_logger(__name__)

TOPIC_EXISTS = 36


class TopicLayoutError(RuntimeError):
    """A registry topic exists with the wrong number of partitions."""


async def ensure_topics(
    bootstrap_servers: str,
    topics: list[str],
    *,
    client_kwargs: dict[str, Any] | None = None,
    attempts: int = 30,
) -> None:
    """Create the registry topics with ONE partition each, before any client can touch them
    (brokers that auto-create topics would give them several partitions, and per-name order, which
    semver needs, would be lost). Existing topics are checked, not changed."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_kwargs or {}))
        try:
            await admin.start()
            try:
                resp = await admin.create_topics(
                    [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics]
                )
                for topic, code, *_ in resp.topic_errors:
                    if code not in (0, TOPIC_EXISTS):
                        raise KafkaError(f"creating topic {topic} failed with error code {code}")
                for desc in await admin.describe_topics(topics):
                    n = len(desc["partitions"])
                    if n != 1:
                        raise TopicLayoutError(
                            f"topic {desc['topic']!r} has {n} partitions; the registry needs"
                            " exactly 1 (recreate it, or point OPSML_*_TOPIC elsewhere)"
                        )
                return
            finally:
                await admin.close()
        except (KafkaConnectionError, OSError) as exc:
            if attempt == attempts:
                raise
            log.info("kafka not reachable yet", servers=bootstrap_servers, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
