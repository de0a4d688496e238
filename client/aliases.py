"""The client's aliases and reads "as of" a moment: the methods `AsyncCardRegistry` gets from
`AliasMethods` (set, remove, list, history; the card an alias names), and the `as_of` form.

Setting or removing an alias is a command like a registration (SetAlias/RemoveAlias, waited on
until the sequencer has decided it); protected aliases (`prod` by default) need an admin token
or an explicit grant (docs/events.md, "Aliases").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID, uuid4

from client import commands
from registry_core.contracts.aliases import AliasMove, AliasOut
from registry_core.contracts.http import AliasedCard, CommandOutcome
from registry_core.domain.cards import Card, RegistryType
from registry_core.domain.commands import AnyCommand, RemoveAlias, SetAlias
from registry_core.domain.errors import CardNotFound, InvalidQuery

if TYPE_CHECKING:
    from client.transport import Transport

AsOf = int | datetime | str | None


def as_of_text(value: AsOf) -> str | None:
    """`as_of` as the API takes it: an event offset, or an ISO 8601 time (a time without a zone
    is taken as UTC, here and by the API)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidQuery("as_of is an event offset (an int) or a time, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise InvalidQuery(f"as_of offset {value} is negative: use 0 or more")
        return str(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


class _Registry(Protocol):
    registry_type: RegistryType
    transport: Transport

    async def _execute(self, command: AnyCommand) -> CommandOutcome: ...


class AliasMethods:
    """Aliases of this registry's cards (mixed into AsyncCardRegistry)."""

    def _where(self: _Registry, space: str | None, name: str | None) -> dict[str, Any]:
        if not space or not name:
            raise InvalidQuery("aliases belong to a space/name: give both")
        return {"registry": self.registry_type, "space": space, "name": name}

    async def set_alias(
        self: Any,
        alias: str,
        card: Card | UUID | str | None = None,
        *,
        space: str | None = None,
        name: str | None = None,
        version: str | None = None,
    ) -> CommandOutcome:
        """Point `alias` at a version: a registered `card` (or its uid), or space/name/version
        (exact). Moving an alias is the same call; its history keeps where it pointed before."""
        if card is not None:
            record = await self.transport.get_card(commands.uid_of(card))
            space, name, uid = record.space, record.name, record.uid
        else:
            if not version:
                raise InvalidQuery("set_alias needs a card, or space, name and version")
            found = await self.list_records(space=space, name=name, version=version, limit=1)
            if not found or found[0].version != version.strip():
                raise CardNotFound(
                    f"no {self.registry_type.value} card {space}/{name} version {version}"
                )
            uid = found[0].uid
        command = commands.build(
            SetAlias, command_id=uuid4(), issued_at=datetime.now(UTC), actor=commands.actor(),
            alias=alias, uid=uid, **AliasMethods._where(self, space, name),
        )  # fmt: skip
        outcome: CommandOutcome = await self._execute(command)
        return outcome

    async def remove_alias(self: Any, alias: str, *, space: str, name: str) -> CommandOutcome:
        """Remove `alias` from space/name (AliasNotFound if it has none by that name)."""
        command = commands.build(
            RemoveAlias, command_id=uuid4(), issued_at=datetime.now(UTC), actor=commands.actor(),
            alias=alias, **AliasMethods._where(self, space, name),
        )  # fmt: skip
        outcome: CommandOutcome = await self._execute(command)
        return outcome

    async def list_aliases(
        self: Any, *, space: str, name: str, as_of: AsOf = None
    ) -> list[AliasOut]:
        """The aliases of space/name and the versions they point at (now, or as of a moment)."""
        found = await self.transport.aliases(
            self.registry_type, space, name, None, as_of_text(as_of)
        )
        return list(found.aliases)

    async def alias_history(
        self: Any, *, space: str, name: str, alias: str | None = None, limit: int = 100
    ) -> list[AliasMove]:
        """Every move of the aliases of space/name (or of one alias), newest first."""
        found = await self.transport.alias_history(self.registry_type, space, name, alias, limit)
        return list(found.moves)

    async def alias_record(
        self: Any, alias: str, *, space: str, name: str, as_of: AsOf = None
    ) -> AliasedCard:
        """The record of the version `alias` points at (now, or as of a moment)."""
        record: AliasedCard = await self.transport.alias_card(
            self.registry_type, space, name, alias, as_of_text(as_of)
        )
        return record
