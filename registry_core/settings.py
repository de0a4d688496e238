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
    # TLS towards the broker (SSL / SASL_SSL): CA bundle, and a client certificate if required.
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    # What authenticated clients get from /api/v1/config to reach the broker (they never set
    # Kafka settings themselves). Defaults: the protocol and mechanism above, no credentials,
    # the CA file above if any.
    kafka_client_security_protocol: (
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None
    ) = None
    kafka_client_sasl_mechanism: str | None = None
    kafka_client_sasl_username: str | None = None
    kafka_client_sasl_password: SecretStr | None = None
    commands_topic: str = "opsml.commands"
    events_topic: str = "opsml.events"
    # How long a fetch waits for records when the log is quiet. Tansu does not wake a waiting
    # fetch when data arrives, so the first command after a quiet spell waits on average half of
    # this; real Kafka wakes at once. Longer means less polling while idle: the worker and Tansu
    # together use ~12% of a core idle at 5 ms, ~5.5% at 20 ms (docs/performance.md, fifth round).
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=0, le=10_000)
    # The worker's fetch wait while commands keep coming (any in the last
    # `worker_busy_window_s`): on Tansu a busy client's registrations each wait ~1.5 ms for the
    # worker's fetch instead of ~2.5 ms at 5 ms. Back to kafka_fetch_max_wait_ms once quiet.
    # Not 1: with 1 ms fetches Tansu 0.6.0 spun (60% of a core) and stalled 8 concurrent
    # producers for ~2 s at a time (W2 at 4,000 cards: 8-17 cards/s); 2 and 3 ms did not.
    kafka_fetch_max_wait_busy_ms: int = Field(default=3, ge=0, le=10_000)
    worker_busy_window_s: float = Field(default=2.0, ge=0)
    # How long a fetch or produce may go unanswered before it is retried. aiokafka's 40 s
    # default turned a broker that drops a response (seen with Tansu on S3 under concurrent
    # producers) into 40-80 s stalls; retries are safe here (de-duplication by command_id and
    # event_id), so fail fast.
    kafka_request_timeout_ms: int = Field(default=5000, ge=1000)

    max_command_bytes: int = Field(default=1_048_576, ge=1024)
    worker_batch_max: int = Field(default=500, ge=1, le=100_000)
    # Decide the next batch while the previous one is being projected into Postgres (a second
    # connection for its outcome check; see Sequencer.process). False: one batch at a time.
    worker_pipeline: bool = True
    worker_name: str = "sequencer"
    lock_retry_seconds: float = Field(default=1.0, gt=0)
    # The worker's /livez, /readyz and /metrics (workers/sequencer/health.py): off unless a
    # port is set (infra/k8s and infra/docker-compose.yml set 8001).
    worker_health_port: int | None = Field(default=None, ge=0, le=65535)
    worker_health_host: str = "0.0.0.0"

    # Artifact storage: "s3://bucket/prefix" or a local directory (default: .opsml/artifacts).
    storage_uri: str = ".opsml/artifacts"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    max_artifact_bytes: int = Field(default=5 * 1024**3, ge=1)
    # Delete a card's artifacts when the card is deleted (default: keep them).
    delete_artifacts: bool = False

    # Access control (docs/security.md). "auto": tokens are required when OPSML_GRANT_KEY is set
    # or the API listens beyond loopback (where it refuses to start without the key); the API is
    # open only on loopback with no key. "tokens": always required. "off": open - allowed on
    # loopback only.
    auth: Literal["auto", "tokens", "off"] = "auto"
    grant_key: SecretStr | None = None
    # How long the API and the worker trust a token lookup (revocation takes effect within it).
    token_cache_seconds: float = Field(default=5.0, ge=0)
    # Aliases only a token with the admin scope may set or remove (comma-separated) ...
    protected_aliases: str = "prod,production"
    # ... or a token granted one explicitly: "alias:token_id" pairs, comma-separated
    # ("prod:3f2a9c1d0b7e"; the token id is the public part of opsml_<id>_<secret>).
    alias_grants: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    command_wait_max_seconds: float = 60.0

    # Where `opsml dev` keeps its event log. "memory": Tansu holds it in memory and every start
    # writes the Postgres archive (`event_log`) back into it in large batches, so its fetches stay
    # cheap (Tansu 0.6 lists every stored batch on each fetch; its S3 engine keeps one per
    # registration: ~140 ms per fetch at 10k); subscriber groups' positions are kept in the data
    # directory. "s3": Tansu keeps its own log in the stack's SeaweedFS (the earlier layout).
    dev_log: Literal["memory", "s3"] = "memory"

    # Webhooks (docs/events.md, "Webhooks"). Endpoints on loopback, private or reserved
    # addresses are refused (at registration and at every delivery) unless this is set.
    webhook_allow_private: bool = False
    # One attempt: connect, send, and read the (bounded) response, all within this.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Attempts before a delivery is dead-lettered; the delay doubles from base up to max.
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_backoff_base_seconds: float = Field(default=1.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=600.0, gt=0)
    # How much of a response is read and kept in the delivery log (the rest is never read).
    webhook_response_max_bytes: int = Field(default=4096, ge=0, le=1_048_576)
    # How often the delivery process looks for new endpoints and redelivery requests.
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # The delivery process's fetch wait on opsml.events (bounds its latency on Tansu).
    webhook_fetch_max_wait_ms: int = Field(default=50, ge=0, le=10_000)
    # How long a rotated-out secret keeps signing next to the new one.
    webhook_secret_grace_hours: float = Field(default=24.0, ge=0)
    # Delivered deliveries (and their attempts) are kept this long in the delivery log; dead
    # and pending ones until they are delivered or their endpoint is deleted.
    webhook_retention_days: float = Field(default=30.0, gt=0)

    log_format: Literal["json", "console"] = "console"
    log_level: str = "info"

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    def grant_key_bytes(self) -> bytes | None:
        return self.grant_key.get_secret_value().encode() if self.grant_key else None

    def auth_required(self, host: str | None = None) -> bool:
        """Whether tokens (API) and signed commands (worker) are required. `host` is the API's
        listen address (None for the worker). Raises ValueError for an unsafe combination."""
        loopback = host is None or _is_loopback(host)
        if self.auth == "off":
            if not loopback:
                raise ValueError(
                    f"OPSML_AUTH=off is allowed only on loopback, and the API would listen on"
                    f" {host}: set OPSML_GRANT_KEY and create tokens (`opsml token create`)"
                )
            return False
        if self.auth == "tokens" or self.grant_key is not None or not loopback:
            if self.grant_key is None or len(self.grant_key.get_secret_value()) < 32:
                raise ValueError(
                    "access control needs OPSML_GRANT_KEY, a secret of at least 32 characters"
                    " shared by the API and the worker (e.g. `openssl rand -hex 32`)"
                    + ("" if loopback else f"; the API would listen on {host}, beyond loopback")
                )
            return True
        return False

    def kafka_client_kwargs(self) -> dict[str, object]:
        """Security settings passed through to every aiokafka client (worker and API side)."""
        kwargs: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile,
                certfile=self.kafka_ssl_certfile,
                keyfile=self.kafka_ssl_keyfile,
            )
        if self.kafka_sasl_mechanism:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kwargs


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class ClientSettings(BaseSettings):
    """What a data scientist sets: only the tracking URI (the rest comes from the server)."""

    model_config = SettingsConfigDict(env_prefix="OPSML_", extra="ignore")

    tracking_uri: str = "http://127.0.0.1:8000"
    # An API token; may also ride in the tracking URI as https://<token>@host.
    token: SecretStr | None = None
    # Overrides, for networks where the advertised Kafka address is not reachable.
    kafka_bootstrap_servers_override: str | None = None
    request_timeout_seconds: float = 30.0
    register_timeout_seconds: float = 60.0
    kafka_request_timeout_ms: int = 5000
    # Uploads and downloads of artifacts (per request; large files stream).
    transfer_timeout_seconds: float = 600.0
