"""Artifact finalisation: the files a registration declares, checked and put in the card's place.

A command declares its files (path, size, sha256); the client uploaded them to a staging prefix
named after the command, or points at identical content the space already stores. Before any
event points at a card's files they are copied to the card's prefix, with `card.json` beside
them (an event never points at a missing artifact); staged uploads are removed once the batch is
committed. What a check finds wrong is a verdict the decider answers (`Refused`), not an error.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from uuid import UUID

import asyncpg
import orjson
import structlog

from registry_core.domain.artifacts import ArtifactRef, card_prefix, staging_prefix
from registry_core.domain.commands import RegisterCard
from registry_core.domain.errors import InvalidArtifact
from registry_core.domain.events import CardDeleted, CardRegistered, Event
from registry_core.domain.verdicts import Refused
from registry_core.persistence.db import Q
from registry_core.persistence.projection import Unstorable as SetAside
from registry_core.storage import ArtifactStore
from registry_core.storage.base import hash_of
from workers.sequencer.faults import Faults

log = structlog.get_logger("opsml.sequencer")

Sources = dict[UUID, dict[str, str]]  # command id -> declared path -> where to copy it from
COPIES_AT_ONCE = 8


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Artifacts:
    def __init__(
        self,
        store: ArtifactStore,
        conn: asyncpg.Connection,
        faults: Faults,
        *,
        delete_artifacts: bool = False,
    ) -> None:
        self.store = store
        self.conn = conn  # the lock-holding connection: the artifacts table is read after commits
        self.faults = faults
        self.delete_artifacts = delete_artifacts  # OPSML_DELETE_ARTIFACTS: files of deleted cards
        self._cleanup: set[asyncio.Task[None]] = set()

    async def check(self, commands: list[RegisterCard]) -> tuple[Sources, dict[UUID, Refused]]:
        """For each command: where every declared file can be copied from (its staged upload,
        or an identical file the registry already stores in that space), or why not."""
        sources: Sources = {}
        refused: dict[UUID, Refused] = {}
        for cmd in commands:
            rows = await self.conn.fetch(
                Q["known_artifacts"], cmd.registry.value, cmd.space,
                [a.sha256 for a in cmd.artifacts],
            )  # fmt: skip
            known = {r["sha256"]: r["key"] for r in rows}
            try:
                found = await asyncio.gather(
                    *(self._source_of(cmd, a, known) for a in cmd.artifacts)
                )
            except InvalidArtifact as problem:
                refused[cmd.command_id] = Refused.because(problem)
            else:
                sources[cmd.command_id] = dict(found)
        return sources, refused

    async def _source_of(
        self, cmd: RegisterCard, ref: ArtifactRef, known: dict[str, str]
    ) -> tuple[str, str]:
        staged = f"{staging_prefix(cmd.command_id)}/{ref.path}"
        stat = await self.store.stat(staged)
        if stat is not None:
            if stat.size != ref.size:
                raise InvalidArtifact(
                    f"artifact {ref.path}: {stat.size} bytes were uploaded, the command declares"
                    f" {ref.size}"
                )
            sha = stat.sha256 or await hash_of(self.store, staged)
            if sha != ref.sha256:
                raise InvalidArtifact(
                    f"artifact {ref.path}: the uploaded bytes hash to {sha}, the command declares"
                    f" {ref.sha256}"
                )
            return ref.path, staged
        stored = await self.store.stat(known[ref.sha256]) if ref.sha256 in known else None
        if stored is not None:
            # The declaration must match what is stored: the card's manifest is what a download
            # checks against, and the artifacts table feeds later de-duplication.
            if stored.size != ref.size:
                raise InvalidArtifact(
                    f"artifact {ref.path}: the registry already stores this content (sha256"
                    f" {ref.sha256}) as {stored.size} bytes, the command declares {ref.size};"
                    " declare the file's real size"
                )
            if stored.sha256 is not None and stored.sha256 != ref.sha256:
                raise InvalidArtifact(
                    f"artifact {ref.path}: the stored file for sha256 {ref.sha256} hashes to"
                    f" {stored.sha256}; upload the file again"
                )
            return ref.path, known[ref.sha256]
        raise InvalidArtifact(
            f"artifact {ref.path} was not uploaded: no staged file for command {cmd.command_id}"
            f" and no stored file with sha256 {ref.sha256} in {cmd.registry.value}/{cmd.space}"
        )

    async def finalize(self, events: Iterable[Event], sources: Sources) -> None:
        """Copy the files of the batch's registrations to their cards' places, and write each
        card's `card.json` beside them."""
        limit = asyncio.Semaphore(COPIES_AT_ONCE)

        async def place(src: str, dst: str) -> None:
            async with limit:
                await self.store.copy(src, dst)
                self.faults.artifact_copied()

        for ev in events:
            if not (isinstance(ev, CardRegistered) and ev.card.artifacts):
                continue
            c = ev.card
            prefix = card_prefix(c.registry.value, c.space, c.name, c.version)
            paths = sources[ev.command_id]
            await asyncio.gather(*(place(paths[a.path], f"{prefix}/{a.path}") for a in c.artifacts))
            body = orjson.dumps(c.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
            await self.store.put(
                f"{prefix}/card.json", _once(body), sha256=hashlib.sha256(body).hexdigest(),
                max_bytes=len(body),
            )  # fmt: skip

    def clean_after_commit(self, commands: Iterable[RegisterCard], events: list[Event]) -> None:
        """Best-effort clean-up once the batch is committed: staged uploads, and the files of
        deleted cards when OPSML_DELETE_ARTIFACTS is set. Never blocks the batch loop."""
        prefixes = [staging_prefix(c.command_id) for c in commands if c.artifacts]
        if self.delete_artifacts:
            prefixes += [
                card_prefix(e.card.registry.value, e.card.space, e.card.name, e.card.version)
                for e in events
                if isinstance(e, CardDeleted) and e.card.artifacts
            ]
        if prefixes:
            task = asyncio.create_task(self._delete(prefixes))
            self._cleanup.add(task)
            task.add_done_callback(self._cleanup.discard)

    async def discard_files_of(self, found: list[SetAside]) -> None:
        """Remove what `finalize` placed for registrations that were never stored, so that the
        version's directory is empty when the version is given out again."""
        await self._delete(
            [
                card_prefix(ev.card.registry.value, ev.card.space, ev.card.name, ev.card.version)
                for ev in (item.item.event for item in found if item.decided)
                if isinstance(ev, CardRegistered) and ev.card.artifacts
            ]
        )

    async def _delete(self, prefixes: list[str]) -> None:
        for prefix in prefixes:
            try:
                await self.store.delete_prefix(prefix)
            except Exception as exc:  # storage hiccups must not hurt the sequencer
                log.warning("artifact clean-up failed", prefix=prefix, error=str(exc))

    async def close(self) -> None:
        """Let the clean-ups under way finish."""
        await asyncio.gather(*self._cleanup, return_exceptions=True)
