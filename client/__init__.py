"""The opsml-registry client: typed card registries (async and sync) and the card classes.

from client import CardRegistry, RunCard
reg = CardRegistry("run")          # OPSML_TRACKING_URI=http://127.0.0.1:8000
card = reg.register_card(RunCard(space="demo", name="churn"))
"""

from client.errors import AlreadyRegistered, RegistrationTimeout, RegistryUnavailable
from client.registry import AsyncCardRegistry, CardRegistry
from registry_core.domain.cards import Card, DataCard, ModelCard, RunCard
from registry_core.domain.errors import (
    CardNotFound,
    InvalidCommand,
    InvalidName,
    InvalidVersion,
    RegistryError,
    VersionConflict,
    WrongRegistry,
)

__all__ = [
    "AlreadyRegistered",
    "AsyncCardRegistry",
    "Card",
    "CardNotFound",
    "CardRegistry",
    "DataCard",
    "InvalidCommand",
    "InvalidName",
    "InvalidVersion",
    "ModelCard",
    "RegistrationTimeout",
    "RegistryError",
    "RegistryUnavailable",
    "RunCard",
    "VersionConflict",
    "WrongRegistry",
]
