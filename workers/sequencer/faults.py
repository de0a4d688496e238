"""Fault injection: the points where a test makes the sequencer fail, as one hook object.

The crash tests need the worker to die (or misbehave) at exact lines: after Kafka acknowledged a
batch and before its projection commits, in the middle of placing artifacts, or with a produce
retried across a broker failure. The sequencer calls these hooks at those lines; a production
sequencer runs `Faults()`, whose hooks do nothing. A test passes its own subclass
(`Sequencer(settings, faults=...)`), or names one of `INJECTABLE` in `OPSML_FAULT_INJECT` for a
worker it runs as a process.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable

import structlog

from registry_core.domain.events import Event

log = structlog.get_logger("opsml.sequencer")

PublishOne = Callable[[Event, bytes], Awaitable[None]]


class Faults:
    """No faults: every hook does nothing."""

    def decided(self, events: list[Event]) -> list[Event]:
        """A batch's decisions, before they are encoded and published."""
        return events

    async def before_publish(
        self, events: list[Event], payloads: list[bytes], publish_one: PublishOne
    ) -> None:
        """Just before a batch's events are published (`publish_one` writes one record)."""

    def after_publish(self) -> None:
        """Kafka acknowledged the batch's events; its projection has not started."""

    def artifact_copied(self) -> None:
        """One artifact file was copied to its card's place; others of the batch may not be."""


def _kill(where: str) -> None:
    log.warning(f"fault injection: SIGKILL {where}")
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterPublish(Faults):
    def after_publish(self) -> None:
        _kill("after publishing, before projecting")


class KillMidFinalize(Faults):
    def artifact_copied(self) -> None:
        _kill("in the middle of finalizing artifacts")


class DuplicatePublish(Faults):
    """What a produce retried across a broker failure leaves: an unacknowledged first copy of an
    event before the acknowledged one."""

    async def before_publish(
        self, events: list[Event], payloads: list[bytes], publish_one: PublishOne
    ) -> None:
        log.warning("fault injection: an extra copy of the batch's first event")
        await publish_one(events[0], payloads[0])


INJECTABLE: dict[str, type[Faults]] = {
    "after-publish": KillAfterPublish,
    "mid-finalize": KillMidFinalize,
    "duplicate-publish": DuplicatePublish,
}


def from_environment() -> Faults:
    """The fault `OPSML_FAULT_INJECT` names (none when unset; an unknown name injects none)."""
    name = os.environ.get("OPSML_FAULT_INJECT")
    if not name:
        return Faults()
    if name not in INJECTABLE:
        log.warning("unknown OPSML_FAULT_INJECT: no fault injected", fault=name,
                    known=sorted(INJECTABLE))  # fmt: skip
        return Faults()
    return INJECTABLE[name]()
