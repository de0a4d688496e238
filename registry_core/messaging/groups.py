"""Messaging: consumer groups' committed positions in one partition, read and written back.

`opsml dev` keeps its Tansu log in memory and writes the Postgres archive back at every start;
the positions of subscriber groups (`client.subscribe(group_id=...)`) would be lost with the
broker, so the dev stack reads them every few seconds and commits them again at the next start.

Tansu 0.6 answers an OffsetFetch for all of a group's partitions in a shape aiokafka cannot parse
(the connection is dropped); asking for the one partition works, so every read names it.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata


class GroupPositions:
    """Every consumer group's committed offset in partition 0 of `topic`, read through one
    long-lived admin client (a snapshot costs a list and, per group, a coordinator lookup and an
    offset fetch: no connection set-up, no group join)."""

    def __init__(
        self, bootstrap_servers: str, topic: str, client_kwargs: dict[str, Any] | None = None
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.tp = TopicPartition(topic, 0)
        self.client_kwargs = client_kwargs or {}
        self.admin: AIOKafkaAdminClient | None = None

    async def read(self) -> dict[str, int]:
        """{group: committed offset} for the groups with a position in the partition."""
        if self.admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, **self.client_kwargs
            )
            await admin.start()
            self.admin = admin
        positions: dict[str, int] = {}
        for group, *_ in await self.admin.list_consumer_groups():
            got = await self.admin.list_consumer_group_offsets(group, partitions=[self.tp])
            committed = got.get(self.tp)
            if committed is not None and committed.offset >= 0:
                positions[group] = committed.offset
        return positions

    async def close(self) -> None:
        if self.admin is not None:
            admin, self.admin = self.admin, None
            await admin.close()


async def commit_positions(
    bootstrap_servers: str,
    topic: str,
    positions: dict[str, int],
    client_kwargs: dict[str, Any] | None = None,
) -> None:
    """Commit each group's offset in partition 0 of `topic` (aiokafka's admin client cannot;
    a consumer named after the group commits without joining it)."""
    tp = TopicPartition(topic, 0)
    for group, offset in positions.items():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            **(client_kwargs or {}),
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        finally:
            await consumer.stop()
