"""The opsml-registry client: typed card registries (async and sync) and the card classes.

from client import CardRegistry, RunCard
reg = CardRegistry("run")          # OPSML_TRACKING_URI=http://127.0.0.1:8000
card = reg.register_card(RunCard(space="demo", name="churn"))
"""

from client.cards import (
    AuditCard,
    Card,
    DataCard,
    ExperimentCard,
    ModelCard,
    PipelineCard,
    ProjectCard,
    PromptCard,
    RunCard,
)
from client.errors import AlreadyRegistered, RegistrationTimeout, RegistryUnavailable
from client.offline import load_card_dir
from client.registry import AsyncCardRegistry
from client.server_uri import UnsupportedTrackingUri
from client.subscribe import (
    EventFilter,
    EventRouter,
    ReceivedEvent,
    on_event,
    run_handlers,
    subscribe,
)
from client.sync import CardRegistry
from client.transport import CardQuery, Transport
from registry_core.domain.cards import AuditComment, AuditQuestion, Metric
from registry_core.domain.errors import (
    ArtifactIntegrityError,
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
    "ArtifactIntegrityError",
    "AsyncCardRegistry",
    "AuditCard",
    "AuditComment",
    "AuditQuestion",
    "Card",
    "CardIsDeleted",
    "CardNotFound",
    "CardQuery",
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
    "Transport",
    "UnknownReference",
    "UnsupportedTrackingUri",
    "VersionConflict",
    "WrongRegistry",
    "load_card_dir",
    "on_event",
    "run_handlers",
    "subscribe",
]
