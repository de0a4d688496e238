"""Infrastructure errors: the broker, the database or the store failed us, not the caller.

Domain errors (`registry_core.domain.errors`) are answers to a command; these are reasons a process
cannot run. Each carries the address it tried and the setting that names it, so a command line can
print one line the operator can act on instead of a traceback. The docstring is the default
message. They subclass `RuntimeError`, and each also subclasses what the code it replaces raised
(aiokafka's `KafkaConnectionError`, `ConnectionError`), so callers that already caught those -
the worker's supervisor treats them as transient - keep working.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiokafka.errors import KafkaConnectionError


class InfrastructureError(RuntimeError):
    """A service the registry depends on failed."""

    #: The environment variable an operator changes to point at the right service.
    setting: str | None = None
    #: Whether trying again later can succeed (a service that is down may come back; lost data
    #: does not): a supervisor restarts on these and stops on the others.
    transient: bool = False

    def __init__(
        self,
        message: str | None = None,
        *,
        address: str | None = None,
        setting: str | None = None,
    ) -> None:
        self.address = address
        if setting is not None:
            self.setting = setting
        super().__init__(message or self.default_message())

    def default_message(self) -> str:
        # The address and the setting go right after the headline (up to the first ':'), so the
        # advice that follows still reads as one sentence.
        text = " ".join((self.__doc__ or type(self).__name__).split())
        head, colon, tail = text.partition(":")
        where = f" at {self.address}" if self.address else ""
        fix = f" (check {self.setting})" if self.setting else ""
        return f"{head.rstrip('.')}{where}{fix}{colon}{tail}"

    def __str__(self) -> str:
        # (not aiokafka's "ClassName: message": the message is the whole line an operator reads)
        return str(self.args[0]) if self.args else ""

    @property
    def message(self) -> str:
        return str(self.args[0])


class BrokerUnreachable(InfrastructureError, KafkaConnectionError):
    """Cannot reach the Kafka broker."""

    setting = "OPSML_KAFKA_BOOTSTRAP_SERVERS"
    transient = True


class BrokerDataLost(InfrastructureError):
    """The broker lost its data: its log ends below what this registry already processed. Stop
    every worker and run `opsml replay --republish` to write the Postgres archive back (see
    docs/events.md)."""

    setting = "OPSML_KAFKA_BOOTSTRAP_SERVERS"


class DatabaseUnreachable(InfrastructureError, ConnectionError):
    """Cannot reach the Postgres database."""

    setting = "OPSML_DATABASE_URL"
    transient = True


class StoreUnreachable(InfrastructureError, ConnectionError):
    """Cannot reach the artifact store."""

    setting = "OPSML_STORAGE_URI"
    transient = True


def database_address(dsn: str) -> str:
    """The host, port and database of a DSN without its password, fit to print."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the configured database"
    db = parts.path.lstrip("/")
    return f"{host}:{port}/{db}" if db else f"{host}:{port}"
