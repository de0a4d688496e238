"""Messaging: the Kafka plumbing every registry process shares (aiokafka) - topic creation,
partition readers and the high-water probe, the gap-free reader at an adaptive pace, the event
log's decode-skip-fence rule, and consumer groups' positions. One home for each, so the worker,
the replay, the API, the dev stack and the subscriber cannot drift apart."""

from registry_core.messaging.consumers import (
    check_reachable,
    consumer_for,
    high_water,
    log_end,
    partition_consumer,
    refuse_if_log_lost,
    start_client,
)
from registry_core.messaging.events import (
    DecodeCounts,
    Decoded,
    EpochFence,
    EventDecoder,
    EventLogReader,
)
from registry_core.messaging.groups import GroupPositions, commit_positions
from registry_core.messaging.reader import ContiguousReader, FetchPace
from registry_core.messaging.topics import TopicLayoutError, ensure_topics

__all__ = [
    "ContiguousReader",
    "DecodeCounts",
    "Decoded",
    "EpochFence",
    "EventDecoder",
    "EventLogReader",
    "FetchPace",
    "GroupPositions",
    "TopicLayoutError",
    "check_reachable",
    "commit_positions",
    "consumer_for",
    "ensure_topics",
    "high_water",
    "log_end",
    "partition_consumer",
    "refuse_if_log_lost",
    "start_client",
]
