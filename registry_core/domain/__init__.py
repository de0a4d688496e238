"""The pure domain: cards, names, semver rules, commands, events, decide/evolve, verdicts, errors.

Imports nothing that does I/O (no asyncpg, aiokafka, boto, clocks or randomness).
"""

from registry_core.domain.cards import (
    CARD_CLASS_FOR_REGISTRY,
    CARD_CLASSES,
    AuditCard,
    Card,
    CardRecord,
    DataCard,
    ExperimentCard,
    ModelCard,
    PipelineCard,
    ProjectCard,
    PromptCard,
    RegistryType,
    RunCard,
    card_key,
)
from registry_core.domain.commands import DeleteCard, RegisterCard, UpdateCard
from registry_core.domain.decider import Context, decide, handle
from registry_core.domain.errors import RegistryError
from registry_core.domain.events import (
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
    SequencerStarted,
)
from registry_core.domain.state import INITIAL_STATE, NameState, evolve, fold
from registry_core.domain.verdicts import Refused, Unreadable, Unstorable, Unstored
from registry_core.domain.versioning import VersionType

__all__ = [
    "CARD_CLASSES",
    "CARD_CLASS_FOR_REGISTRY",
    "INITIAL_STATE",
    "AuditCard",
    "Card",
    "CardDeleted",
    "CardRecord",
    "CardRegistered",
    "CardUpdated",
    "CommandRejected",
    "Context",
    "DataCard",
    "DeleteCard",
    "Event",
    "ExperimentCard",
    "ModelCard",
    "NameState",
    "PipelineCard",
    "ProjectCard",
    "PromptCard",
    "Refused",
    "RegisterCard",
    "RegistryError",
    "RegistryType",
    "RunCard",
    "SequencerStarted",
    "Unreadable",
    "Unstorable",
    "Unstored",
    "UpdateCard",
    "VersionType",
    "card_key",
    "decide",
    "evolve",
    "fold",
    "handle",
]
