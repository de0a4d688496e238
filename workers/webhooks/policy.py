"""Webhooks: which events an endpoint wants (its filters) and when a failed delivery is tried
again (exponential backoff with jitter, dead-lettered after N attempts). Pure functions."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

MARKER = "sequencer_started"  # internal; never delivered


@dataclass(frozen=True)
class Filters:
    """AND-ed; an empty `event_types` means every type, a None pattern any value."""

    event_types: Sequence[str] = ()
    registry: str | None = None
    space: str | None = None
    name: str | None = None
    alias: str | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Filters:
        return cls(
            tuple(row["event_types"] or ()), row["registry"], row["space"], row["name"],
            row["alias"],
        )  # fmt: skip

    def matches(self, event: Mapping[str, Any]) -> bool:
        """`event` is the event as JSON (its contract shape): the subject is the card's
        registry/space/name where it has a card, else the event's own fields (rejections,
        alias events)."""
        kind = event.get("type")
        if kind == MARKER or (self.event_types and kind not in self.event_types):
            return False
        card = event.get("card")
        subject = card if isinstance(card, Mapping) else event
        for pattern, value in (
            (self.registry, subject.get("registry")),
            (self.space, subject.get("space")),
            (self.name, subject.get("name")),
            (self.alias, event.get("alias")),
        ):
            if pattern is not None and not (isinstance(value, str) and fnmatchcase(value, pattern)):
                return False
        return True


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1 after n failures: base * 2^(n-1), capped, times a uniform
    factor in [1 - jitter, 1] (full jitter spreads the retries of many endpoints that failed
    together, e.g. after a network blip, instead of sending them in lock-step)."""

    base_s: float = 1.0
    max_s: float = 600.0
    jitter: float = 0.5
    max_attempts: int = 8

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_s, self.base_s * 2 ** max(0, failures - 1))
        r = (rng or random).random()
        return raw * (1 - self.jitter * r)

    def exhausted(self, attempts_this_round: int) -> bool:
        return attempts_this_round >= self.max_attempts
