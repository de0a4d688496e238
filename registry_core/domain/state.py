"""The decider's state (pure): what is known about one card name, and `evolve`.

State is per sequencing key (registry/space/name): the versions already taken, deleted ones
included, and the newest of them (kept so that a bump does not re-parse the whole history).
`evolve` never validates: it records what was decided. The batch's view of card records
(`refs`) is kept current by `remember`, the same fold for the records a command points at.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, MutableMapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from uuid import UUID

import semver

from registry_core.domain.cards import CardRecord
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    Event,
)
from registry_core.domain.versioning import latest

Refs = Mapping[UUID, CardRecord]


@dataclass(frozen=True)
class NameState:
    """What the sequencer knows about one card name.

    `versions` as a plain `set` means the holder owns it (the sequencer's state cache): evolve
    grows it in place, so a registration costs O(1) instead of copying the name's whole history,
    and the state given to evolve must not be used again. Any other set (a frozenset) is copied:
    a pure fold."""

    versions: AbstractSet[str] = field(default_factory=frozenset)
    newest: semver.Version | None = None
    # alias -> (uid, version) it points at; replaced (never changed in place) by evolve
    aliases: Mapping[str, tuple[UUID, str]] = field(default_factory=dict)


INITIAL_STATE = NameState()

# Version strings repeat across names ("1.3.0" in every name): parse each once. semver's
# Version is immutable, so the cached objects can be shared by every name's state.
parse_version = functools.lru_cache(maxsize=65_536)(semver.Version.parse)


def evolve(state: NameState, event: Event) -> NameState:
    if not isinstance(event, CardRegistered):
        if isinstance(event, AliasSet | AliasRemoved):
            return _moved(state, event)
        return state  # updates, deletes and rejections take no version (deleted ones stay taken)
    version = event.card.version
    newest = _newer(state, parse_version(version))
    versions = state.versions
    if isinstance(versions, set):
        versions.add(version)
    else:
        versions = versions | {version}
    return NameState(versions, newest, state.aliases)


def _moved(state: NameState, event: AliasSet | AliasRemoved) -> NameState:
    aliases = dict(state.aliases)
    if isinstance(event, AliasSet):
        aliases[event.alias] = (event.uid, event.version)
    else:
        aliases.pop(event.alias, None)
    return NameState(state.versions, state.newest, aliases)


def _newer(state: NameState, v: semver.Version) -> semver.Version:
    newest = state.newest
    if newest is None:
        if not state.versions:
            return v
        newest = latest(state.versions)  # a state built without its newest (tests, hand-made)
        if newest is None:
            return v
    if v.prerelease is None and newest.prerelease is None:
        # releases: precedence is the numbers (build metadata does not count); cheaper than
        # semver's comparison, which this is on every registration
        if (v.major, v.minor, v.patch) > (newest.major, newest.minor, newest.patch):
            return v
        return newest
    return v if v > newest else newest


def fold(events: Iterable[Event], state: NameState = INITIAL_STATE) -> NameState:
    for event in events:
        state = evolve(state, event)
    return state


def remember(refs: MutableMapping[UUID, CardRecord], event: Event) -> None:
    """Keep the batch's view of card records current (a card updated or deleted by one command
    of a batch is seen so by the next one)."""
    if isinstance(event, CardRegistered | CardUpdated | CardDeleted):
        refs[event.card.uid] = event.card
