"""Messaging: reading the event log the one way every reader must - decode each record, skip
what cannot be read, and apply the epoch rule.

The rule (docs/architecture.md, "Fencing a zombie"): an event whose epoch is lower than the
highest epoch seen so far is a fenced-off sequencer's output. The projection archives it as not
applied, a replay does the same, a subscriber drops it. A record that is not an event - a gap
placeholder of `opsml replay --republish` (no value), or bytes the codec refuses - is skipped by
all of them alike, so the live tables, a rebuild and a subscriber see the same events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import structlog

from registry_core.contracts.codec import decode_event
from registry_core.domain.events import Event
from registry_core.messaging.reader import ContiguousReader, FetchPace

log = structlog.get_logger(__name__)


class Counts(Protocol):
    """Where a decoder counts what it saw (a replay's statistics, or `DecodeCounts`)."""

    applied: int
    fenced: int
    undecodable: int


@dataclass
class DecodeCounts:
    applied: int = 0
    fenced: int = 0
    undecodable: int = 0


@dataclass
class EpochFence:
    """The epoch rule's running state: the highest epoch applied so far."""

    max_epoch: int = 0

    def admit(self, epoch: int) -> bool:
        """Whether an event of `epoch` is applied (and, if so, the new highest epoch)."""
        if epoch >= self.max_epoch:
            self.max_epoch = epoch
            return True
        return False


# (offset, payload as read, the fence's highest epoch when it was met): a record that is not an
# event, for a reader that must still answer the command it may have decided (the sequencer).
OnUndecodable = Callable[[int, Any, int], None]


class EventDecoder:
    """(offset, payload) -> (event, applied), or None for a record that is not an event."""

    def __init__(
        self,
        fence: EpochFence | None = None,
        counts: Counts | None = None,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> None:
        self.fence = fence if fence is not None else EpochFence()
        self.counts: Counts = counts if counts is not None else DecodeCounts()
        self.on_undecodable = on_undecodable

    @property
    def max_epoch(self) -> int:
        return self.fence.max_epoch

    def decode(self, offset: int, payload: bytes | str | dict[str, Any] | None) -> Decoded | None:
        if payload is None:
            self.counts.undecodable += 1  # a gap placeholder (see republish) or an empty record
            return None
        try:
            event = decode_event(payload)
        except Exception as exc:
            self.counts.undecodable += 1
            log.warning("skipping an undecodable event", offset=offset, error=str(exc)[:300])
            if self.on_undecodable is not None:
                self.on_undecodable(offset, payload, self.fence.max_epoch)
            return None
        applied = self.fence.admit(event.epoch)
        if applied:
            self.counts.applied += 1
        else:
            self.counts.fenced += 1
        return Decoded(offset, event, applied, payload)


class Decoded(NamedTuple):
    offset: int
    event: Event
    applied: bool  # False: fenced (a lower epoch than one already applied)
    payload: bytes | str | dict[str, Any]  # as read


class EventLogReader:
    """The events of one partition from a position: gap-free (`ContiguousReader`), decoded, and
    fenced (`EventDecoder`). `position` is the next offset to read, past skipped records too,
    so a caller that keeps it (a subscriber's commit) never reads a skipped record again."""

    def __init__(
        self,
        consumer: Any,
        tp: Any,
        position: int,
        *,
        decoder: EventDecoder | None = None,
        end: int | None = None,
        gap_timeout: float = 5.0,
        pace: FetchPace | None = None,
    ) -> None:
        self.records = ContiguousReader(consumer, tp, position, gap_timeout=gap_timeout, pace=pace)
        self.decoder = decoder if decoder is not None else EventDecoder()
        self.end = end  # the last offset wanted (inclusive); None: no end

    @property
    def position(self) -> int:
        return self.records.position

    @property
    def done(self) -> bool:
        return self.end is not None and self.records.position > self.end

    async def read(self, timeout_ms: int, max_records: int) -> list[Decoded]:
        """The next run of events (possibly none), never past `end`."""
        decode, end = self.decoder.decode, self.end
        out: list[Decoded] = []
        for rec in await self.records.read(timeout_ms=timeout_ms, max_records=max_records):
            if end is not None and rec.offset > end:
                break
            got = decode(rec.offset, rec.value)
            if got is not None:
                out.append(got)
        return out
