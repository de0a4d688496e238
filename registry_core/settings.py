"""Settings: the only place environment variables are read (prefix OPSML_)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server-side settings (API, worker, migrations, dev stack)."""

    model_config = SettingsConfigDict(env_prefix="OPSML_", extra="ignore")

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/opsml")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # What the API tells clients to connect to (defaults to the servers the worker uses).
    kafka_client_bootstrap_servers: str | None = None
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    commands_topic: str = "opsml.commands"
    events_topic: str = "opsml.events"
    # Tansu does not wake a waiting fetch when data arrives: a consumer sees new data after about
    # half this wait. Real Kafka wakes at once, so a small value costs nothing there.
    kafka_fetch_max_wait_ms: int = Field(default=5, ge=0, le=10_000)
    # How long a fetch or produce may go unanswered before it is retried. aiokafka's 40 s
    # default turned a broker that drops a response (seen with Tansu on S3 under concurrent
    # producers) into 40-80 s stalls; retries are safe here (de-duplication by command_id and
    # event_id), so fail fast.
    kafka_request_timeout_ms: int = Field(default=5000, ge=1000)

    max_command_bytes: int = Field(default=1_048_576, ge=1024)
    worker_batch_max: int = Field(default=500, ge=1, le=100_000)
    worker_name: str = "sequencer"
    lock_retry_seconds: float = Field(default=1.0, gt=0)

    # Artifact storage: "s3://bucket/prefix" or a local directory (default: .opsml/artifacts).
    storage_uri: str = ".opsml/artifacts"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    max_artifact_bytes: int = Field(default=5 * 1024**3, ge=1)
    # Delete a card's artifacts when the card is deleted (default: keep them).
    delete_artifacts: bool = False

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    command_wait_max_seconds: float = 60.0

    log_format: Literal["json", "console"] = "console"
    log_level: str = "info"

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    def kafka_client_kwargs(self) -> dict[str, object]:
        """Security settings passed through to every aiokafka client (worker and API side)."""
        kwargs: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kwargs


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class ClientSettings(BaseSettings):
    """What a data scientist sets: only the tracking URI (the rest comes from the server)."""

    model_config = SettingsConfigDict(env_prefix="OPSML_", extra="ignore")

    tracking_uri: str = "http://127.0.0.1:8000"
    # Overrides, for networks where the advertised Kafka address is not reachable.
    kafka_bootstrap_servers_override: str | None = None
    request_timeout_seconds: float = 30.0
    register_timeout_seconds: float = 60.0
    kafka_request_timeout_ms: int = 5000
    # Uploads and downloads of artifacts (per request; large files stream).
    transfer_timeout_seconds: float = 600.0
