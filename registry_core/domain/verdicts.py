"""What checks outside the domain found about a command, as plain data the decider takes (pure).

Access control, the artifact store, the codec and the read tables are outside the domain: the
worker runs them, and hands what they found to `decider.handle` as data instead of building
rejections itself. So every `CommandRejected` is the domain's decision, with one envelope, one
event-id rule and one rule for which names a rejection may echo.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from registry_core.domain.errors import RegistryError
from registry_core.domain.errors import Unstorable as Unstorable  # its old home
from registry_core.domain.events import Event

# A rejection answering a decision of the same command and epoch that was refused after it was
# published gets this event-id index (the decision holds 0), so the two facts never share an id.
ANSWER_INDEX = 1


@dataclass(frozen=True, slots=True)
class Refused:
    """A check refused the command: the error code the sender's client raises, and why."""

    code: str
    reason: str

    @classmethod
    def because(cls, error: RegistryError) -> Refused:
        return cls(error.code, error.message)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A message on the commands topic that is not a valid command: what could be salvaged from
    it (unchecked: `registry`, `space` and `name` are echoed only if the registry is one of
    ours) and why it was refused."""

    command_id: UUID
    refused: Refused
    registry: object = None
    space: object = None
    name: object = None


@dataclass(frozen=True, slots=True)
class Unstored:
    """A decision that was published but cannot be stored or read back (`problem` says why;
    `about` is the decision, when it could be read): its command is rejected after all, by a
    second fact behind it in the log (workers/sequencer/isolation.py)."""

    command_id: UUID
    problem: str
    about: Event | None = None
