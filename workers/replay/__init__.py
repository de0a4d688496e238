"""Replay: rebuild every read table from the event log (Kafka or the Postgres archive) into a
fresh schema, verify it, switch atomically; and restore a broker that lost its data from the
archive (`republish`). See docs/events.md."""

from workers.replay.rebuild import ReplayResult, ReplayStats, replay
from workers.replay.republish import RepublishResult, republish
from workers.replay.schemas import ReplayError

__all__ = ["ReplayError", "ReplayResult", "ReplayStats", "RepublishResult", "replay", "republish"]
