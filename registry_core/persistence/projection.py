"""Persistence: the projection - events -> read tables, event archive, command outcomes and
tracking, in ONE transaction per batch, so a crash leaves either all of a batch or none of it;
and the isolation of an event the tables refuse ("Poison events", docs/architecture.md).

The rows each event becomes live in rows.py, the tracking row in tracking.py; both are
re-exported here, where the worker, the replay and the tests have always found them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import asyncpg.exceptions._base
import orjson
import structlog

from registry_core.domain.cards import CardRecord
from registry_core.domain.errors import RegistryError
from registry_core.domain.events import CardDeleted, CardRegistered, CardUpdated, Event
from registry_core.persistence.aliases import AliasRows
from registry_core.persistence.db import Q
from registry_core.persistence.rows import (
    ARCHIVE_COLUMNS,
    CARD_COLUMNS,
    OUTCOME_COLUMNS,
    artifact_rows,
    card_row,
    has_outcome,
    json_rows,
    lineage_rows,
    metric_rows,
    outcome_row,
)
from registry_core.persistence.tracking import Fenced, Tracking, claim_epoch, get_tracking

__all__ = [
    "ARCHIVE_COLUMNS", "CARD_COLUMNS", "NOTIFY_CHUNK", "OUTCOME_COLUMNS", "UNSTORABLE", "Fenced",
    "LoggedEvent", "OnUnstorable", "Tracking", "Unstorable", "artifact_rows", "card_row",
    "claim_epoch", "describe_refusal", "get_tracking", "json_rows", "lineage_rows",
    "metric_rows", "outcome_row", "project",
]  # fmt: skip

log = structlog.get_logger(__name__)

NOTIFY_CHUNK = 200  # command ids per NOTIFY payload (payloads are limited to 8000 bytes)
# (the old private name, still imported by tests)
_json_rows = json_rows


@dataclass(frozen=True)
class LoggedEvent:
    offset: int
    event: Event
    applied: bool
    # The event's JSON as published (the live worker encodes each event once, for Kafka and for
    # the archive); None: serialise `event` here.
    payload: str | bytes | None = None


# What makes the tables refuse a batch because of the data in it - the same refusal for the
# same event every time, in the live projection, the catch-up and a replay - as opposed to a lost
# connection (retried by a fresh sequencer) or a constraint that guards the exactly-once
# argument (the versions' unique key: a sequencing bug must stop the worker, not be skipped).
UNSTORABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,  # class 22: \u0000, out-of-range numbers and dates, bad text
    asyncpg.exceptions.ProgramLimitExceededError,  # 54000: index row or jsonb too large
    asyncpg.exceptions.NotNullViolationError,
    asyncpg.exceptions.CheckViolationError,
    # asyncpg could not encode an argument ("invalid input for query argument $5"); not
    # exported under a public name, and not the connection errors of its base InterfaceError
    asyncpg.exceptions._base.DataError,
    OverflowError,  # asyncpg's encoders in executemany: dates and integers out of range
    orjson.JSONEncodeError,  # a row the JSON encoder refuses (e.g. an int past 64 bits)
    RegistryError,  # a row builder refused a value (a version part past the integer column)
)


@dataclass(frozen=True)
class Unstorable:
    """An event the tables refused on its own, set aside by `project()`."""

    item: LoggedEvent
    problem: str  # the refusal, short (describe_refusal)
    decided: bool  # it was its command's decision: the command has no outcome
    answered_later: bool  # a later event of the same call decides the command
    archived: bool  # in event_log with applied = false (else only the offsets moved)

    @property
    def needs_answer(self) -> bool:
        """Its command is left without an outcome unless a rejection is published for it."""
        return self.decided and not self.answered_later


# The live worker's hook: publish rejections for the commands set aside, return their events.
OnUnstorable = Callable[[list[Unstorable]], Awaitable[list[LoggedEvent]]]


async def project(
    conn: asyncpg.Connection,
    *,
    tracking_name: str,
    epoch: int | None,
    events: Sequence[LoggedEvent],
    command_offset: int = -1,
    fresh_decisions: bool = False,
    on_unstorable: OnUnstorable | None = None,
) -> list[Unstorable]:
    """Write a batch. `epoch` is the writer's claimed epoch (None for a replay, which is not
    fenced). Raises Fenced when a newer sequencer has claimed the registry.

    `fresh_decisions`: the events were just decided for commands the caller already checked
    have no outcome (the live batch loop), so the duplicate check below can be skipped.

    The archive, new cards, outcomes, tracking and NOTIFY go in ONE statement
    (`project_batch`); a live batch of registrations and rejections is therefore one round trip
    and one (implicit) transaction. Updates, deletes, artifacts, lineage and metrics add
    statements, and then the whole batch runs in an explicit transaction.

    An event the tables cannot store (a data error, `UNSTORABLE`: never a lost connection or a
    constraint that guards the versions) does not stop the batch: the batch is written again in
    one transaction, halves in savepoints down to single events, and each event refused on its
    own is set aside - archived with applied = false, nothing else - and returned. The live
    worker's `on_unstorable` is called in that transaction, before it commits, to publish a
    rejection for the commands set aside; what it returns (their events) is written in the same
    transaction. Catch-up and replay find those rejections in the log, after the events they
    answer, and reach the same tables: whether an event can be stored depends on the event alone
    (docs/architecture.md, "Poison events")."""
    try:
        await _project(conn, tracking_name, epoch, events, command_offset, fresh_decisions)
        return []
    except UNSTORABLE as exc:
        log.warning(
            "the read tables refuse part of a batch: setting aside what they cannot store",
            events=len(events), error=describe_refusal(exc),
        )  # fmt: skip
    found: list[Unstorable] = []
    last_answer: dict[UUID, int] = {}
    for item in events:
        if item.applied and has_outcome(item.event):
            last_answer[item.event.command_id] = item.offset
    async with conn.transaction():
        await _bisect(conn, tracking_name, epoch, list(events), command_offset,
                      fresh_decisions, found, last_answer)  # fmt: skip
        if found and on_unstorable is not None:
            answers = await on_unstorable(list(found))
            if answers:
                # An answer the tables refuse too is set aside like any event, and returned;
                # answers are checked against stored outcomes (the log may hold copies).
                await _bisect(conn, tracking_name, epoch, answers, command_offset, False, found, {})
    return found


async def _project(
    conn: asyncpg.Connection,
    tracking_name: str,
    epoch: int | None,
    events: Sequence[LoggedEvent],
    command_offset: int,
    fresh_decisions: bool,
) -> None:
    archive: list[dict[str, object]] = []
    cards: list[dict[str, object]] = []
    outcomes: list[dict[str, object]] = []
    lineage: list[tuple[object, ...]] = []
    metrics: list[tuple[object, ...]] = []
    stored: list[tuple[object, ...]] = []
    rewritten: dict[object, CardRecord] = {}
    moved = AliasRows()  # alias moves and card changes (for reads "as of" a moment)
    max_epoch, max_offset, max_cmd = 0, -1, command_offset
    notify: list[str] = []

    def rows(decided: set[object]) -> None:
        nonlocal max_epoch, max_offset, max_cmd
        for item in events:
            ev = item.event
            applied = item.applied
            # A producer retry can leave the same decision twice in the log (no idempotent
            # producer on the test broker): the first copy of a command's outcome wins, later
            # copies are archived as not applied - the same rule for catch-up and replay. The
            # live worker de-duplicated its commands against these outcomes before deciding.
            if applied and has_outcome(ev):
                if ev.command_id in decided:
                    applied = False
                else:
                    decided.add(ev.command_id)
            payload = item.payload
            if payload is None:
                payload = orjson.dumps(ev.model_dump(mode="json"))
            archive.append(
                {"event_offset": item.offset, "event_id": ev.event_id, "event_type": ev.type,
                 "command_id": ev.command_id, "epoch": ev.epoch,
                 "schema_version": ev.schema_version, "applied": applied,
                 "occurred_at": ev.occurred_at, "payload": orjson.Fragment(payload)}
            )  # fmt: skip
            max_offset = max(max_offset, item.offset)
            if not applied:
                continue
            max_epoch = max(max_epoch, ev.epoch)
            if ev.command_offset is not None:
                max_cmd = max(max_cmd, ev.command_offset)
            if isinstance(ev, CardRegistered):
                cards.append(card_row(ev, item.offset))
                stored.extend(artifact_rows(ev.card))
                lineage.extend(lineage_rows(ev.card))
                metrics.extend(metric_rows(ev.card))
            elif isinstance(ev, CardUpdated | CardDeleted):
                rewritten[ev.card.uid] = ev.card  # the last record of a uid in the batch wins
            if not isinstance(ev, CardRegistered):
                moved.add(ev, item.offset)
            out = outcome_row(ev, item.offset)
            if out is not None:
                outcomes.append(out)
                notify.append(str(ev.command_id))

    async def write() -> None:
        chunks = [
            ",".join(notify[i : i + NOTIFY_CHUNK]) for i in range(0, len(notify), NOTIFY_CHUNK)
        ]
        row = await conn.fetchrow(
            Q["project_batch"],
            tracking_name, max_cmd, max_offset, max_epoch, epoch,
            json_rows(archive), json_rows(cards), json_rows(outcomes), chunks,
        )  # fmt: skip
        if not row["ok"]:
            current = await get_tracking(conn, tracking_name)
            if current is None:
                raise RuntimeError(f"no tracking row {tracking_name!r}: claim an epoch first")
            raise Fenced(f"epoch {epoch} was superseded by {current.claimed_epoch}")

    if fresh_decisions:
        rows(set())
        if not (rewritten or stored or lineage or metrics or moved):
            await write()  # one statement: its own transaction
            return
    async with conn.transaction():
        if not fresh_decisions:
            ids = list({i.event.command_id for i in events if has_outcome(i.event)})
            decided = {r["command_id"] for r in await conn.fetch(Q["known_outcomes"], ids)}
            rows(decided)
        await write()
        if rewritten:
            # after the inserts: a card registered and updated in one batch ends up updated
            await conn.executemany(
                Q["rewrite_card"],
                [
                    (c.uid, c.tags, c.description, c.metadata, c.attributes, c.status, c.updated_at)
                    for c in rewritten.values()
                ],
            )
            uids = list(rewritten)
            await conn.execute(Q["clear_lineage"], uids)
            await conn.execute(Q["clear_metrics"], uids)
            # rows derived from a registration in this same batch are superseded
            lineage = [r for r in lineage if r[0] not in rewritten]
            metrics = [r for r in metrics if r[0] not in rewritten]
            for c in rewritten.values():
                lineage.extend(lineage_rows(c))
                metrics.extend(metric_rows(c))
        if stored:
            await conn.executemany(Q["insert_artifact"], stored)
        gone = [uid for uid, c in rewritten.items() if c.status == "deleted"]
        if gone:
            # a deleted card's files are no source for de-duplication any more
            await conn.execute(Q["delete_artifacts_of"], gone)
        if lineage:
            await conn.executemany(Q["insert_lineage"], lineage)
        if metrics:
            await conn.executemany(Q["insert_metric"], metrics)
        if moved:
            await moved.write(conn)


async def _bisect(
    conn: asyncpg.Connection,
    tracking_name: str,
    epoch: int | None,
    part: list[LoggedEvent],
    command_offset: int,
    fresh_decisions: bool,
    found: list[Unstorable],
    last_answer: dict[UUID, int],
) -> None:
    """Write `part` in a savepoint; if the tables refuse it, its halves, in log order (so the
    first-decision-wins rule sees the earlier half's outcomes), down to single events."""
    try:
        async with conn.transaction():
            await _project(conn, tracking_name, epoch, part, command_offset, fresh_decisions)
        return
    except UNSTORABLE as exc:
        if len(part) == 1:
            found.append(
                await _set_aside(conn, tracking_name, epoch, part[0], command_offset,
                                 fresh_decisions, exc, last_answer)
            )  # fmt: skip
            return
    mid = len(part) // 2
    for half in (part[:mid], part[mid:]):
        await _bisect(conn, tracking_name, epoch, half, command_offset, fresh_decisions, found,
                      last_answer)  # fmt: skip


async def _set_aside(
    conn: asyncpg.Connection,
    tracking_name: str,
    epoch: int | None,
    item: LoggedEvent,
    command_offset: int,
    fresh_decisions: bool,
    exc: BaseException,
    last_answer: dict[UUID, int],
) -> Unstorable:
    """Archive an event the tables refused, as not applied, and move the tracking offsets past
    it (its command is answered by the rejection that follows it in the log). If even the
    archive refuses it, only the offsets move. An event the live worker published that the
    codec cannot read back is not archived at all: catch-up and replay skip it too."""
    ev = item.event
    decided = item.applied and has_outcome(ev)
    if decided and not fresh_decisions:
        known = await conn.fetch(Q["known_outcomes"], [ev.command_id])
        decided = not known
    payload: str | bytes | None = item.payload
    if payload is None:
        payload = orjson.dumps(ev.model_dump(mode="json"))
    else:
        from registry_core.contracts.codec import decode_event  # (contracts sit above us)

        try:
            decode_event(payload)
        except Exception:
            payload = None
    cmd = command_offset
    if item.applied and ev.command_offset is not None and 0 <= ev.command_offset < 2**63:
        cmd = max(cmd, ev.command_offset)
    args = (tracking_name, cmd, item.offset, ev.epoch if item.applied else 0, epoch)
    row = None
    if payload is not None:
        text = payload.decode() if isinstance(payload, bytes) else payload
        try:
            async with conn.transaction():
                row = await conn.fetchrow(
                    Q["set_aside_event"], *args, ev.event_id, ev.type, ev.command_id, ev.epoch,
                    ev.schema_version, ev.occurred_at, text,
                )  # fmt: skip
        except UNSTORABLE as again:
            log.error("the archive refuses an event too: only the offsets move past it",
                      offset=item.offset, error=describe_refusal(again))  # fmt: skip
    archived = row is not None
    if row is None:
        row = await conn.fetchrow(Q["set_aside_event"], *args, *([None] * 7))
    if row is None or not row["ok"]:
        current = await get_tracking(conn, tracking_name)
        claimed = current.claimed_epoch if current else None
        raise Fenced(f"epoch {epoch} was superseded by {claimed}")
    problem = describe_refusal(exc)
    log.error(
        "an event the read tables cannot store was set aside", offset=item.offset,
        event_type=ev.type, command_id=str(ev.command_id), error=problem, archived=archived,
    )  # fmt: skip
    return Unstorable(
        item, problem, decided, last_answer.get(ev.command_id, -1) > item.offset, archived
    )


def describe_refusal(exc: BaseException) -> str:
    """A short, printable description of why the tables refused a value (for logs and for the
    rejection's reason; Postgres' message can quote the value, so it is clipped and cleaned)."""
    state = getattr(exc, "sqlstate", None)
    text = f"{type(exc).__name__}{f' ({state})' if state else ''}: {exc}"
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= 300 else text[:297] + "..."
