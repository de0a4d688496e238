"""The opsml-registry client: typed card registries (async and sync) and the card classes.

from client import CardRegistry, RunCard
reg = CardRegistry("run")          # OPSML_TRACKING_URI=http://127.0.0.1:8000
card = reg.register_card(RunCard(space="demo", name="churn"))
"""

from client.errors import AlreadyRegistered, RegistrationTimeout, RegistryUnavailable
from client.registry import AsyncCardRegistry, CardRegistry
from client.subscribe import (
    EventFilter,
    EventRouter,
    ReceivedEvent,
    on_event,
    run_handlers,
    subscribe,
)
from registry_core.domain.cards import (
    AuditCard,
    AuditComment,
    AuditQuestion,
    Card,
    DataCard,
    ExperimentCard,
    Metric,
    ModelCard,
    PipelineCard,
    ProjectCard,
    PromptCard,
    RunCard,
)
from registry_core.domain.errors import (
    CardIsDeleted,
    CardNotFound,
    InvalidCommand,
    InvalidName,
    InvalidQuery,
    InvalidVersion,
    NameTaken,
    NotDeletable,
    RegistryError,
    UnknownReference,
    VersionConflict,
    WrongRegistry,
)

__all__ = [
    "AlreadyRegistered",
    "AsyncCardRegistry",
    "AuditCard",
    "AuditComment",
    "AuditQuestion",
    "Card",
    "CardIsDeleted",
    "CardNotFound",
    "CardRegistry",
    "DataCard",
    "EventFilter",
    "EventRouter",
    "ExperimentCard",
    "InvalidCommand",
    "InvalidName",
    "InvalidQuery",
    "InvalidVersion",
    "Metric",
    "ModelCard",
    "NameTaken",
    "NotDeletable",
    "PipelineCard",
    "ProjectCard",
    "PromptCard",
    "ReceivedEvent",
    "RegistrationTimeout",
    "RegistryError",
    "RegistryUnavailable",
    "RunCard",
    "UnknownReference",
    "VersionConflict",
    "WrongRegistry",
    "on_event",
    "run_handlers",
    "subscribe",
]
