"""Persistence: the tracking row - how far a projection got in each topic, and the epochs that
fence a sequencer that lost its claim (docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from registry_core.persistence.db import Q


class Fenced(RuntimeError):
    """Another sequencer claimed a newer epoch: this one must stop writing."""


@dataclass(frozen=True)
class Tracking:
    command_offset: int
    event_offset: int
    max_epoch: int
    claimed_epoch: int


async def get_tracking(conn: asyncpg.Connection, name: str) -> Tracking | None:
    row = await conn.fetchrow(Q["get_tracking"], name)
    return Tracking(**dict(row)) if row else None


async def claim_epoch(conn: asyncpg.Connection, name: str) -> Tracking:
    row = await conn.fetchrow(Q["claim_epoch"], name)
    return Tracking(**dict(row))
