"""Events (pure): immutable facts the sequencer publishes to `opsml.events`. Wire contract.

Every event carries `event_id`, the `command_id` that caused it, `occurred_at`, `schema_version`,
the sequencer `epoch` that wrote it (a fencing token, see docs/architecture.md) and the offset of
the command in `opsml.commands` (so catching up on events also advances the command position).
"""

from __future__ import annotations

from hashlib import sha1
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field

from registry_core.domain.bounds import Int32, Int64, SafeText, Storable, StoredDatetime
from registry_core.domain.cards import CardRecord, RegistryType, card_key

EVENT_SCHEMA_VERSION: Literal[1] = 1

# Fixed namespace: UIDs and event ids are uuid5(namespace, command_id ...), stable forever.
OPSML_NAMESPACE = UUID("5b0f3f2e-8d4e-4c55-9a55-6f70736d6c00")


_NAMESPACE_BYTES = OPSML_NAMESPACE.bytes
# uuid5's version (5) and variant (RFC 4122) bits, set on the first 128 bits of the SHA-1
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (5 << 76) | (0x8000 << 48)


def _uuid5(name: str) -> UUID:
    """`uuid5(OPSML_NAMESPACE, name)`, computed the same way with fewer steps (the sequencer
    derives two per registration); tests/unit/test_fast_paths.py checks they agree."""
    digest = sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    return UUID(int=(int.from_bytes(digest[:16]) & _CLEAR) | _SET)


def uid_for_command(command_id: UUID) -> UUID:
    """The card UID a RegisterCard command produces: same command, same UID."""
    return _uuid5(f"card:{command_id}")


def event_id_for(command_id: UUID, epoch: int, index: int = 0) -> UUID:
    return _uuid5(f"event:{command_id}:{epoch}:{index}")


class EventBase(Storable):
    """Every field is checked to what the projection can store (`Storable`); the epoch is an
    `integer` column, offsets `bigint`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = EVENT_SCHEMA_VERSION
    event_id: UUID
    command_id: UUID
    occurred_at: StoredDatetime
    epoch: Int32 = Field(ge=0)
    command_offset: Int64 | None = None

    @property
    def partition_key(self) -> str | None:
        """The Kafka message key the event is published with: the card it is about
        (`registry/space/name`, the sequencing key), where the event names one. The sequencer
        and a republish of the archive must key alike, so it is computed here, once."""
        return None


class CardRegistered(EventBase):
    type: Literal["card_registered"] = "card_registered"
    card: CardRecord

    @property
    def partition_key(self) -> str | None:
        return self.card.key


class CardUpdated(EventBase):
    """A card's mutable fields changed; `card` is the full record after the change."""

    type: Literal["card_updated"] = "card_updated"
    card: CardRecord
    changed: list[str]


class CardDeleted(EventBase):
    """A card was deleted (a tombstone); `card` is its record with status "deleted"."""

    type: Literal["card_deleted"] = "card_deleted"
    card: CardRecord


class CommandRejected(EventBase):
    type: Literal["command_rejected"] = "command_rejected"
    # composed by the registry, quoting input: made storable (escaped), never refused
    error_code: SafeText
    reason: SafeText
    registry: RegistryType | None = None
    space: SafeText | None = None
    name: SafeText | None = None

    @property
    def partition_key(self) -> str | None:
        if self.registry and self.space and self.name:
            return card_key(self.registry, self.space, self.name)
        return None


class AliasSet(EventBase):
    """An alias of registry/space/name now points at `version` (card `uid`); `previous_*` is
    where it pointed before (None: a new alias). `actor` is who moved it."""

    type: Literal["alias_set"] = "alias_set"
    registry: RegistryType
    space: str = Field(max_length=64)
    name: str = Field(max_length=64)
    alias: str = Field(max_length=64)
    uid: UUID
    version: str = Field(max_length=256)
    previous_uid: UUID | None = None
    previous_version: str | None = Field(default=None, max_length=256)
    actor: str | None = Field(default=None, max_length=256)

    @property
    def partition_key(self) -> str | None:
        return card_key(self.registry, self.space, self.name)


class AliasRemoved(EventBase):
    """An alias of registry/space/name was removed; `uid`/`version` is where it pointed."""

    type: Literal["alias_removed"] = "alias_removed"
    registry: RegistryType
    space: str = Field(max_length=64)
    name: str = Field(max_length=64)
    alias: str = Field(max_length=64)
    uid: UUID
    version: str = Field(max_length=256)
    actor: str | None = Field(default=None, max_length=256)

    @property
    def partition_key(self) -> str | None:
        return card_key(self.registry, self.space, self.name)


class SequencerStarted(EventBase):
    """A sequencer took the lock with a new epoch. Events of older epochs after this marker are
    ignored by every projection (a fenced-off worker that kept publishing)."""

    type: Literal["sequencer_started"] = "sequencer_started"


Event = Annotated[
    CardRegistered
    | CardUpdated
    | CardDeleted
    | CommandRejected
    | SequencerStarted
    | AliasSet
    | AliasRemoved,
    Field(discriminator="type"),
]
AliasEvent = AliasSet | AliasRemoved
CardEvent = CardRegistered | CardUpdated | CardDeleted
