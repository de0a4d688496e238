"""One batch's decisions: each command's walk from its Kafka record to its events.

A record is decoded (a message that is no command becomes an `Unreadable`), skipped when its
command already has an outcome (Kafka redelivers, clients retry), and handed to the decider with
what the worker's own checks found about it (access control, artifacts: `Refused` verdicts) and
what the decider reads (the name's state, the records the command points at). Each decision is
then folded, with the domain's `evolve` and `remember`, into what the next command reads. Last,
the decisions are encoded once: the same bytes go to Kafka and to the archive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid5

import structlog
from aiokafka import ConsumerRecord

from registry_core.contracts.codec import UndecodableCommand, decode_command, encode
from registry_core.domain.cards import CardRecord
from registry_core.domain.commands import (
    AnyCommand,
    DeleteCard,
    RegisterCard,
    RemoveAlias,
    SetAlias,
)
from registry_core.domain.decider import INITIAL_STATE, Context, handle, referenced_uids, remember
from registry_core.domain.errors import RegistryError, clip
from registry_core.domain.events import (
    OPSML_NAMESPACE,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    Event,
    uid_for_command,
)
from registry_core.domain.verdicts import Refused, Unreadable
from workers.sequencer import isolation
from workers.sequencer.state_cache import StateCache

log = structlog.get_logger("opsml.sequencer")


@dataclass
class Batch:
    """A batch of command records, decoded, with what deciding them will read."""

    records: Sequence[ConsumerRecord[bytes, bytes]]
    items: list[AnyCommand | UndecodableCommand]
    ids: list[UUID]  # each record's command id (a stable one for an undecodable message)
    # the names registrations take versions of, and whose aliases commands read (alias_keys)
    keys: set[str] = field(default_factory=set)
    alias_keys: set[str] = field(default_factory=set)
    wanted: set[UUID] = field(default_factory=set)  # the cards commands point at
    with_files: list[RegisterCard] = field(default_factory=list)  # registrations with artifacts

    def dependent_at(self) -> int | None:
        """The first command that points at a card registered earlier in this batch, if any.

        The batch is cut there: that card's registration may yet be refused by the read tables
        (set aside and answered as unstorable), and a command decided against it would be
        answered as if the card existed ("updated", a stored lineage reference). After the cut,
        it reads the card from the database, once its registration is committed or refused."""
        if not self.wanted:
            return None
        registered: set[UUID] = set()
        for i, item in enumerate(self.items):
            if isinstance(item, UndecodableCommand):
                continue
            if registered and not registered.isdisjoint(referenced_uids(item)):
                return i
            if isinstance(item, RegisterCard):
                registered.add(uid_for_command(item.command_id))
        return None


def read(records: Sequence[ConsumerRecord[bytes, bytes]], max_bytes: int) -> Batch:
    items = [decode_command(rec.value, max_bytes=max_bytes) for rec in records]
    ids = [_command_id(rec, item) for rec, item in zip(records, items, strict=True)]
    batch = Batch(records, items, ids)
    for item in items:
        if isinstance(item, UndecodableCommand):
            continue
        batch.wanted.update(referenced_uids(item))
        if isinstance(item, RegisterCard):
            batch.keys.add(item.key)
            if item.artifacts:
                batch.with_files.append(item)
        elif isinstance(item, DeleteCard | SetAlias | RemoveAlias):
            batch.keys.add(item.key)
            batch.alias_keys.add(item.key)
    return batch


def _command_id(rec: ConsumerRecord[bytes, bytes], item: AnyCommand | UndecodableCommand) -> UUID:
    if not isinstance(item, UndecodableCommand):
        return item.command_id
    if item.command_id is not None:
        return item.command_id
    # Nothing to answer to; a stable id keeps the rejection idempotent across redelivery.
    return uuid5(OPSML_NAMESPACE, f"undecodable:{rec.topic}:{rec.partition}:{rec.offset}")


def decide(
    batch: Batch,
    *,
    known: set[UUID],
    refused: Mapping[UUID, Refused],
    states: StateCache,
    refs: dict[UUID, CardRecord],
    epoch: int,
) -> tuple[list[Event], int]:
    """The batch's events, in command order, and how many commands were duplicates (`known`
    holds the ids that already have an outcome)."""
    verbose = _info_enabled()
    events: list[Event] = []
    seen: set[UUID] = set()
    duplicates = 0
    for rec, item, cid in zip(batch.records, batch.items, batch.ids, strict=True):
        if cid in known or cid in seen:
            duplicates += 1  # redelivered: its first outcome stands and is already stored
            continue
        seen.add(cid)
        ctx = Context(now=datetime.now(UTC), epoch=epoch, command_offset=rec.offset)
        decided = _decide_one(item, cid, ctx, refused.get(cid), states, refs)
        if verbose:  # (the log's arguments cost more than the decision's bookkeeping)
            _log(cid, decided)
        events.extend(decided)
    return events, duplicates


def _decide_one(
    item: AnyCommand | UndecodableCommand,
    cid: UUID,
    ctx: Context,
    refused: Refused | None,
    states: StateCache,
    refs: dict[UUID, CardRecord],
) -> list[Event]:
    if isinstance(item, UndecodableCommand):
        log.warning("command rejected: undecodable", command_id=str(cid), reason=item.error.message)
        why = Refused.because(item.error)
        return handle(Unreadable(cid, why, item.registry, item.space, item.name), INITIAL_STATE,
                      refs, ctx)  # fmt: skip
    state = states.get(item.key)
    try:
        events = handle(item, state, refs, ctx, refused)
        states.evolve(item.key, state, events)
        for ev in events:
            remember(refs, ev)
    except Exception as exc:  # a bug must not turn one message into a stuck worker
        log.exception("command could not be handled", command_id=str(cid))
        bug = RegistryError(f"internal error while handling this command: {clip(repr(exc))}")
        return handle(item, state, refs, ctx, Refused.because(bug))
    return events


def _info_enabled() -> bool:
    """Would log.info write anything (structlog's filtering loggers answer without work)?"""
    enabled = getattr(log, "is_enabled_for", None)
    return True if enabled is None else bool(enabled(logging.INFO))


def _log(cid: UUID, events: list[Event]) -> None:
    for ev in events:
        if isinstance(ev, CardRegistered | CardUpdated | CardDeleted):
            log.info(
                ev.type.replace("_", " "), command_id=str(cid), uid=str(ev.card.uid),
                name=ev.card.key, version=ev.card.version,
            )  # fmt: skip
        else:
            log.info("command rejected", command_id=str(cid), reason=getattr(ev, "reason", ""))


def encoded(events: list[Event], states: StateCache, epoch: int) -> tuple[list[Event], list[bytes]]:
    """The events and their JSON. A decision the encoder refuses (a value the models let
    through that JSON cannot carry) becomes its command's rejection here, before anything
    is published, rather than an exception that would stop the worker on every restart."""
    try:
        return events, [encode(ev) for ev in events]
    except Exception:
        pass
    out: list[Event] = []
    payloads: list[bytes] = []
    for ev in events:
        try:
            payload = encode(ev)
        except Exception as exc:
            log.exception("a decision cannot be encoded", command_id=str(ev.command_id))
            states.give_back(ev)
            problem = f"its decision cannot be written to the events log ({clip(repr(exc))})"
            ev = isolation.answer(
                ev.command_id, problem, epoch=epoch, now=datetime.now(UTC),
                command_offset=ev.command_offset, about=ev,
            )  # fmt: skip
            payload = encode(ev)
        out.append(ev)
        payloads.append(payload)
    return out, payloads
