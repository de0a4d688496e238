"""HTTP models of aliases: where each alias points, and every move of them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel


class AliasOut(BaseModel):
    """An alias and the version it points at (now, or as of the moment asked about)."""

    alias: str
    uid: UUID
    version: str
    actor: str | None = None
    set_at: datetime
    event_offset: int  # the AliasSet event that put it there


class AliasList(BaseModel):
    aliases: list[AliasOut]
    as_of_offset: int | None = None  # the event offset an `as_of` resolved to (None: now)


class AliasMove(BaseModel):
    """One AliasSet ("set") or AliasRemoved ("removed")."""

    event_offset: int
    alias: str
    action: Literal["set", "removed"]
    uid: UUID
    version: str
    previous_version: str | None = None
    actor: str | None = None
    occurred_at: datetime


class AliasHistory(BaseModel):
    moves: list[AliasMove]  # newest first
