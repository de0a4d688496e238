"""What the decider reads, kept or loaded by the worker: the per-name state cache, and the card
records a batch's commands point at.

The database is the source of truth; the cache is only speed. A name's state is loaded once
(the versions taken) and then folded forward with the domain's `evolve` as the sequencer
decides, so a registration reads no row. The cache owns its version sets, which evolve grows in
place. It must never hold a version the database does not: a registration the tables refused
gives its version back (`give_back`), and the catch-up, which projects decisions it did not
make, drops the names it touches (`forget`).
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import asyncpg

from registry_core.domain.cards import CardRecord, card_key
from registry_core.domain.events import AliasRemoved, AliasSet, CardRegistered, Event
from registry_core.domain.state import INITIAL_STATE, NameState, evolve
from registry_core.domain.versioning import latest
from registry_core.persistence.aliases import aliases_for_keys
from registry_core.persistence.db import Q
from registry_core.persistence.read import record_from_row

STATE_CACHE_MAX = 200_000


class StateCache:
    def __init__(self, max_names: int = STATE_CACHE_MAX) -> None:
        self.max_names = max_names
        self._states: dict[str, NameState] = {}
        self._aliases_known: set[str] = set()  # names whose state holds their aliases

    def __contains__(self, key: str) -> bool:
        return key in self._states

    def get(self, key: str) -> NameState:
        return self._states.get(key, INITIAL_STATE)

    async def load(
        self, conn: asyncpg.Connection, keys: set[str], alias_keys: Iterable[str] = ()
    ) -> None:
        """The states of the names not cached yet, in one query; and the aliases of the names
        in `alias_keys` (those of deletes and alias commands, a subset of `keys`) not known yet,
        in one more. Registrations never read aliases, so a registration pays no alias query;
        a name's aliases are loaded before the first command that reads them, and then kept
        current by evolve like its versions."""
        missing = [k for k in keys if k not in self._states]
        if missing:
            if len(self._states) + len(missing) > self.max_names:
                self._states.clear()
                self._aliases_known.clear()
                missing = list(keys)  # the batch's cached names went too
            parts = [k.split("/", 2) for k in missing]
            rows = await conn.fetch(
                Q["versions_for_keys"], [p[0] for p in parts], [p[1] for p in parts],
                [p[2] for p in parts],
            )  # fmt: skip
            versions: dict[str, set[str]] = {k: set() for k in missing}
            for r in rows:
                versions[card_key(r["registry"], r["space"], r["name"])].add(r["version"])
            for k, vs in versions.items():
                self._states[k] = NameState(vs, latest(vs))  # a set: owned by the cache
                self._aliases_known.discard(k)
        unknown = [k for k in alias_keys if k not in self._aliases_known]
        if unknown:
            aliases = await aliases_for_keys(conn, unknown)
            for k in unknown:
                state = self._states.get(k, INITIAL_STATE)
                self._states[k] = NameState(state.versions, state.newest, aliases.get(k, {}))
            self._aliases_known.update(unknown)

    def evolve(self, key: str, state: NameState, events: list[Event]) -> None:
        """Record the decisions taken on `state` (the name's cached state) for the next ones."""
        new = state
        for ev in events:
            new = evolve(new, ev)
        if new is not state:
            self._states[key] = new

    def give_back(self, event: Event) -> None:
        """Take back the version of a registration that was never stored (a decision the tables
        refused, answered by a rejection). In place of the name's state, never removing it: a
        batch decided meanwhile (pipelined) must not find the name unknown."""
        if isinstance(event, AliasSet | AliasRemoved):
            self._give_back_alias(event)
            return
        if not isinstance(event, CardRegistered):
            return
        key, version = event.card.key, event.card.version
        state = self._states.get(key)
        if state is None or version not in state.versions:
            return
        versions = set(state.versions)
        versions.discard(version)
        self._states[key] = NameState(versions, latest(versions), state.aliases)

    def _give_back_alias(self, event: AliasSet | AliasRemoved) -> None:
        """Undo an alias move the tables refused: the alias points where it did before."""
        key = event.partition_key or ""
        state = self._states.get(key)
        if state is None:
            return
        aliases = dict(state.aliases)
        if isinstance(event, AliasRemoved):
            aliases[event.alias] = (event.uid, event.version)
        elif event.previous_uid is not None and event.previous_version is not None:
            aliases[event.alias] = (event.previous_uid, event.previous_version)
        else:
            aliases.pop(event.alias, None)
        self._states[key] = NameState(state.versions, state.newest, aliases)

    def forget(self, event: Event) -> None:
        """A decision projected from the log (catch-up): the simplest way for a cached state to
        see it is to load the name again."""
        if isinstance(event, CardRegistered):
            self._states.pop(event.card.key, None)
        elif isinstance(event, AliasSet | AliasRemoved):
            self._states.pop(event.partition_key or "", None)
            self._aliases_known.discard(event.partition_key or "")


async def load_refs(conn: asyncpg.Connection, uids: set[UUID]) -> dict[UUID, CardRecord]:
    """The records of the cards a batch's commands point at (update and delete targets, lineage
    references)."""
    if not uids:
        return {}
    rows = await conn.fetch(Q["get_cards"], list(uids))
    return {r["uid"]: record_from_row(r) for r in rows}
