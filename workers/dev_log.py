"""The in-memory event log of `opsml dev`: restored from the Postgres archive at every start,
with the subscriber groups put back at the positions saved in the data directory.

Tansu keeps the event log in memory, and every start writes the Postgres archive (`event_log`)
back into the events topic at the same offsets, in large batches (`opsml replay --republish`).
Tansu 0.6 stores one batch per produce and lists them all on every fetch, so a log kept in its
S3 engine got slower with every registration (~140 ms per fetch at 10k); restored, 10k events
are ~12 batches. Nothing acknowledged is lost: a registration's events are archived in the
transaction that records the outcome its client waits for. Commands not yet decided when the
stack stopped were never answered (their clients saw a timeout)."""

from __future__ import annotations

from pathlib import Path

import structlog

from registry_core.messaging import commit_positions
from registry_core.settings import Settings
from workers.dev_files import DevStackError, read_saved_positions

log = structlog.get_logger("opsml.dev")

# The restored log's record batches: 10k events in ~12 batches (Tansu lists them on every fetch).
RESTORE_BATCH_BYTES = 1_048_576


async def restore_log(settings: Settings, data_dir: Path) -> dict[str, int]:
    """The broker starts empty: write the Postgres archive back into the events topic at its
    old offsets (large batches: cheap fetches), which also resets the tracked command offset
    (the new commands topic starts at 0), and put every subscriber group back at its saved
    position, which it returns. Every acknowledged registration is in the archive: its events
    are written in the transaction that records the outcome its client waits for."""
    from workers.replay.republish import republish
    from workers.replay.schemas import ReplayError

    try:
        result = await republish(settings, batch_bytes=RESTORE_BATCH_BYTES)
    except ReplayError as exc:
        raise DevStackError(f"cannot restore the event log from the archive: {exc}") from None
    log.info(
        "restored the event log from the archive", events=result.events, gaps=result.gaps,
        seconds=round(result.seconds, 2),
    )  # fmt: skip
    saved = read_saved_positions(data_dir)
    if saved:
        # a position past the archive (events read but never archived before a crash of
        # the whole stack: never acknowledged) resumes at its end, where new events go
        end = result.events + result.gaps
        saved = {group: min(offset, end) for group, offset in saved.items()}
        await commit_positions(settings.kafka_bootstrap_servers, settings.events_topic, saved)
    return saved
