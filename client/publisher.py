"""Publishing commands to the registry's commands topic: the Kafka producer (started on first
use, with the addresses and security settings the registry hands out), the size limit, signing,
and retries.

Shared by every transport that publishes to Kafka: the client never holds broker settings of its
own, so the settings come from a `config()` callable (the HTTP API's /api/v1/config today).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from client import retry
from client.errors import RegistryUnavailable
from registry_core.auth import Grant, command_headers
from registry_core.contracts.codec import encode_command
from registry_core.contracts.http import ClientConfig, KafkaConfig
from registry_core.domain.commands import AnyCommand
from registry_core.domain.errors import Forbidden, InvalidCommand
from registry_core.settings import ClientSettings


def kafka_security(k: KafkaConfig) -> dict[str, Any]:
    """aiokafka security settings from what the registry's /config hands out."""
    out: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = (
            create_ssl_context(cadata=k.ssl_ca_pem) if k.ssl_ca_pem else (create_ssl_context())
        )
    if k.sasl_mechanism:
        out |= {
            "sasl_mechanism": k.sasl_mechanism,
            "sasl_plain_username": k.sasl_username,
            "sasl_plain_password": k.sasl_password,
        }
    return out


def signed(cfg: ClientConfig, payload: bytes) -> list[tuple[str, bytes]] | None:
    """Kafka headers that sign one command, when the registry requires it."""
    if not cfg.auth:
        return None
    if cfg.grant is None:
        raise Forbidden(
            "this registry requires a token with the write scope to register, update or"
            " delete cards; the token in use (if any) is read-only"
        )
    g = cfg.grant
    return command_headers(Grant(g.grant, g.signing_key, g.expires_at), payload)


class KafkaPublisher:
    def __init__(
        self, settings: ClientSettings, config: Callable[[], Awaitable[ClientConfig]]
    ) -> None:
        self.settings = settings
        self._config = config
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                cfg = await self._config()
                servers = (
                    self.settings.kafka_bootstrap_servers_override or cfg.kafka.bootstrap_servers
                )
                producer = AIOKafkaProducer(
                    bootstrap_servers=servers,
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=0,
                    max_request_size=cfg.kafka.max_message_bytes + 65_536,
                    request_timeout_ms=self.settings.kafka_request_timeout_ms,
                    **kafka_security(cfg.kafka),
                )
                try:
                    await producer.start()
                except KafkaError as exc:
                    await producer.stop()
                    raise RegistryUnavailable(
                        f"cannot reach the registry's Kafka at {servers}: {exc}"
                    ) from exc
                self._producer = producer
            return self._producer

    async def publish(self, command: AnyCommand) -> None:
        cfg = await self._config()
        payload = encode_command(command)  # refuses what the sequencer would, naming the field
        if len(payload) > cfg.kafka.max_message_bytes:
            raise InvalidCommand(
                f"the card's metadata is {len(payload)} bytes, over the registry's"
                f" {cfg.kafka.max_message_bytes}-byte limit; store large content as artifacts"
            )
        headers = signed(cfg, payload)

        async def send() -> None:  # re-sending the same command_id is safe (de-duplicated)
            producer = await self.producer()
            await producer.send_and_wait(
                cfg.kafka.commands_topic,
                payload,
                key=command.key.encode(),
                partition=0,
                headers=headers,
            )

        try:
            await retry.call(send, retry_if=retry.kafka_retriable, what="publish")
        except KafkaError as exc:
            raise RegistryUnavailable(f"publishing the command failed: {exc}") from exc

    async def publish_many(self, commands: Sequence[AnyCommand]) -> None:
        cfg = await self._config()
        producer = await self.producer()
        payloads = [encode_command(c) for c in commands]
        for cmd, payload in zip(commands, payloads, strict=True):
            if len(payload) > cfg.kafka.max_message_bytes:
                raise InvalidCommand(
                    f"{cmd.space}/{cmd.name}: {len(payload)} bytes of metadata, over the"
                    f" {cfg.kafka.max_message_bytes}-byte limit"
                )

        topic = cfg.kafka.commands_topic
        keys = [c.key.encode() for c in commands]

        async def send_all() -> None:  # all again after a failure: duplicates are dropped
            # Records go straight into record batches (the producer's batch size, as send()
            # would fill them) - no future and no coroutine per record - and each full batch is
            # queued in order on partition 0.
            sign = await self._config()
            acks = []
            batch = producer.create_batch()
            for key, payload in zip(keys, payloads, strict=True):
                headers = signed(sign, payload) or []
                if batch.append(key=key, value=payload, timestamp=None, headers=headers) is None:
                    acks.append(await producer.send_batch(batch, topic, partition=0))
                    batch = producer.create_batch()  # an empty batch takes any record
                    batch.append(key=key, value=payload, timestamp=None, headers=headers)
            if batch.record_count():
                acks.append(await producer.send_batch(batch, topic, partition=0))
            await asyncio.gather(*acks)

        try:
            await retry.call(send_all, retry_if=retry.kafka_retriable, what="publish")
        except KafkaError as exc:
            raise RegistryUnavailable(f"publishing commands failed: {exc}") from exc

    async def aclose(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
