"""What data scientists import: AsyncCardRegistry and its sync twin CardRegistry.

Registration publishes a RegisterCard command to Kafka (addresses come from the API's
/api/v1/config, so OPSML_TRACKING_URI is the only setting), then long-polls the API for the
outcome, which the API learns through Postgres LISTEN/NOTIFY. When `register_card` returns, the
card is projected: a following `list_cards` sees it (read-your-writes).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import getpass
import importlib.util
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit
from uuid import UUID, uuid4

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from pydantic import ValidationError

from client import longpoll, retry, transfer
from client.errors import AlreadyRegistered, RegistrationTimeout, RegistryUnavailable
from client.transfer import prepared
from registry_core import eventloop
from registry_core.auth import Grant, command_headers
from registry_core.contracts.codec import encode_command
from registry_core.contracts.http import (
    MAX_BULK_OUTCOMES,
    CardList,
    CardOut,
    ClientConfig,
    CommandOutcome,
    KafkaConfig,
    Lineage,
    OutcomeList,
    RunMetrics,
)
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import (
    CARD_CLASS_FOR_REGISTRY,
    Card,
    Metric,
    RegistryType,
    registry_type,
)
from registry_core.domain.commands import AnyCommand, DeleteCard, RegisterCard, UpdateCard
from registry_core.domain.errors import (
    CardNotFound,
    Forbidden,
    InvalidCommand,
    RegistryError,
    WrongRegistry,
    error_from_code,
    summarize_validation,
)
from registry_core.domain.versioning import VersionType
from registry_core.settings import ClientSettings

T = TypeVar("T")
WAIT_SLICE_SECONDS = 25.0

# httpcore runs `import sniffio` several times per request (to tell asyncio from trio); when
# sniffio is not installed (recent anyio no longer needs it) every one of those imports fails
# and searches the whole sys.path again: ~0.3 ms of CPU per request. Record the absence once,
# as a failed import would if Python cached it (`import sniffio` then raises ImportError at
# once, which is what httpcore expects).
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]


class _Cookies(httpx.Cookies):
    """httpx parses every response for cookies (building urllib request/response adapters);
    only a response that sets one needs it. The registry sets none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class _HttpClient(httpx.AsyncClient):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = self._cookies  # through the setter below: a _Cookies jar

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        self._cookies = _Cookies(cookies)


BULK_CHUNK = MAX_BULK_OUTCOMES


GRANT_REFRESH_BEFORE = timedelta(minutes=5)


C = TypeVar("C", RegisterCard, UpdateCard, DeleteCard)


def _command(cls: type[C], **fields: Any) -> C:
    """Build a command; a value the registry cannot take (a card changed in place after it was
    checked, say) is an InvalidCommand naming the field, before anything is sent."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise InvalidCommand(f"{cls.__name__}: {summarize_validation(exc)}") from None


def _split_token(uri: str) -> tuple[str, str | None]:
    """(the URI without user info, the token in it if any)."""
    parts = urlsplit(uri.rstrip("/"))
    if "@" not in parts.netloc:
        return urlunsplit(parts), None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user or password) or None


def _kafka_security(k: KafkaConfig) -> dict[str, Any]:
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


def _registry_type(value: str | RegistryType) -> RegistryType:
    try:
        return registry_type(str(value.value if isinstance(value, RegistryType) else value))
    except ValueError as exc:
        raise WrongRegistry(str(exc)) from None


@functools.cache
def _actor() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


class AsyncCardRegistry:
    """A typed registry (`"run"`, `"data"`, `"model"`) for one event loop."""

    def __init__(
        self,
        registry_type: str | RegistryType,
        *,
        tracking_uri: str | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        self.registry_type = _registry_type(registry_type)
        self.card_class = CARD_CLASS_FOR_REGISTRY[self.registry_type]
        self.settings = settings or ClientSettings()
        # A token may ride in the URI (https://<token>@host): take it out, so that the URI can
        # be shown in messages, and send it as a bearer token.
        self.tracking_uri, uri_token = _split_token(tracking_uri or self.settings.tracking_uri)
        token = self.settings.token.get_secret_value() if self.settings.token else uri_token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = _HttpClient(
            base_url=self.tracking_uri,
            timeout=self.settings.request_timeout_seconds,
            headers=headers,
        )
        self._poller = longpoll.OutcomePoller(
            self.tracking_uri, headers or {}, self.settings.request_timeout_seconds
        )
        self._config: ClientConfig | None = None
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()

    async def __aenter__(self) -> AsyncCardRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self._poller.aclose()
        await self._http.aclose()

    # ---- plumbing ---------------------------------------------------------------------------

    async def _get(self, path: str, **params: Any) -> httpx.Response:
        return await self._request("GET", path, params=params)

    async def _request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = {
                k: (str(v) if isinstance(v, UUID) else v)
                for k, v in params.items()
                if v is not None
            }
        if json is not None:
            kwargs["json"] = json
        try:
            resp = await retry.send(self._http, method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                f"cannot reach the registry at {self.tracking_uri} ({exc.__class__.__name__}:"
                f" {exc}); is OPSML_TRACKING_URI right and the server (e.g. `opsml dev`) running?"
            ) from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"detail": resp.text}
            detail = body.get("detail")
            if isinstance(detail, list):  # FastAPI validation errors
                detail = "; ".join(
                    f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail
                )
            if resp.status_code == 404 and not body.get("error_code"):
                raise CardNotFound(str(detail))
            if resp.status_code >= 500:
                raise RegistryUnavailable(f"registry error {resp.status_code}: {detail}")
            raise error_from_code(body.get("error_code"), str(detail))
        return resp

    async def config(self) -> ClientConfig:
        cfg = self._config
        if cfg is None or (
            cfg.grant is not None
            and cfg.grant.expires_at - datetime.now(UTC) < GRANT_REFRESH_BEFORE
        ):
            cfg = ClientConfig.model_validate((await self._get("/api/v1/config")).json())
            self._config = cfg
        return cfg

    @staticmethod
    def _signed(cfg: ClientConfig, payload: bytes) -> list[tuple[str, bytes]] | None:
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

    async def _get_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                cfg = await self.config()
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
                    **_kafka_security(cfg.kafka),
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

    # ---- commands ---------------------------------------------------------------------------

    def _command_for(
        self,
        card: Card,
        version_type: str | VersionType,
        version: str | None,
        pre_tag: str = "rc",
        build_tag: str = "build",
        artifacts: list[ArtifactRef] | None = None,
    ) -> RegisterCard:
        if not isinstance(card, self.card_class):
            raise WrongRegistry(
                f"a {type(card).__name__} cannot be registered in the"
                f" {self.registry_type.value!r} registry, which holds {self.card_class.__name__}s"
            )
        if card.uid is not None:
            raise AlreadyRegistered(
                f"{card.space}/{card.name} is already registered as version {card.version}"
                f" (uid {card.uid}); create a new card to register a new version"
            )
        try:
            vtype = VersionType(version_type)
        except ValueError:
            known = ", ".join(v.value for v in VersionType)
            raise InvalidCommand(
                f"unknown version_type {version_type!r}; choose one of: {known}"
            ) from None
        return _command(
            RegisterCard,
            command_id=uuid4(),
            issued_at=datetime.now(UTC),
            actor=_actor(),
            registry=self.registry_type,
            space=card.space,
            name=card.name,
            card_type=card.card_type,
            version_type=vtype,
            version=version,
            pre_tag=pre_tag,
            build_tag=build_tag,
            tags=card.tags,
            description=card.description,
            metadata=card.metadata,
            attributes=card.attributes(),
            artifacts=artifacts or [],
        )

    async def publish(self, command: AnyCommand) -> None:
        """Publish a command without waiting for its outcome (see `wait_for`)."""
        cfg = await self.config()
        payload = encode_command(command)  # refuses what the sequencer would, naming the field
        if len(payload) > cfg.kafka.max_message_bytes:
            raise InvalidCommand(
                f"the card's metadata is {len(payload)} bytes, over the registry's"
                f" {cfg.kafka.max_message_bytes}-byte limit; store large content as artifacts"
            )
        headers = self._signed(cfg, payload)

        async def send() -> None:  # re-sending the same command_id is safe (de-duplicated)
            producer = await self._get_producer()
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

    async def wait_for(self, command_id: UUID, timeout: float | None = None) -> CommandOutcome:
        """Block until the sequencer has decided (and projected) the command."""
        deadline = time.monotonic() + (timeout or self.settings.register_timeout_seconds)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RegistrationTimeout(
                    f"no outcome for command {command_id} yet; it may still be applied (is the"
                    " worker running?). Check later with GET /api/v1/commands/{command_id}"
                )
            wait = round(min(left, WAIT_SLICE_SECONDS), 3)
            path = longpoll.outcome_path(command_id, wait)
            # the lean connection for this hot request; httpx (retries, errors) for the rest
            answer = await self._poller.get(path, wait)
            body = answer[1] if answer is not None else (await self._request("GET", path)).content
            outcome = CommandOutcome.model_validate_json(body)
            if outcome.status != "pending":
                return outcome

    async def register_card(
        self,
        card: Card,
        version_type: str | VersionType = VersionType.MINOR,
        version: str | None = None,
        *,
        pre_tag: str = "rc",
        build_tag: str = "build",
        progress: bool | None = None,
    ) -> Card:
        """Register `card`; on return `card.version` and `card.uid` are set and the card is
        visible to every query. Its data/model objects and attached files are uploaded first
        (with a progress bar for large transfers on a terminal).

        version_type: major | minor (default) | patch | pre | build | pre_build. `version` may be
        a full version (taken as given if free), or a line ("2", "2.1") to bump within."""
        with prepared(card) as (files, learnt):
            for key, value in learnt.items():
                setattr(card, key, value)
            command = self._command_for(
                card, version_type, version, pre_tag, build_tag, [ref for ref, _ in files]
            )
            if files:
                await self._upload(command, files, progress)
            outcome = await self._execute(command)
        assert outcome.card is not None
        card.version = outcome.card.version
        card.uid = outcome.card.uid
        card.created_at = outcome.card.created_at
        card.artifacts = list(outcome.card.artifacts)
        card._pending.clear()
        self._bind(card)
        return card

    async def _upload(
        self, command: RegisterCard, files: list[tuple[ArtifactRef, Path]], progress: bool | None
    ) -> None:
        """Upload into the command's staging area every file the registry does not already
        hold in this space (identical content is never uploaded twice)."""
        resp = await self._request(
            "POST",
            "/api/v1/artifacts/known",
            json={
                "registry": command.registry.value,
                "space": command.space,
                "sha256": [ref.sha256 for ref, _ in files],
            },
        )
        known = set(resp.json()["known"])
        todo = [(ref, path) for ref, path in files if ref.sha256 not in known]
        try:
            await transfer.upload(
                self._http,
                command.command_id,
                todo,
                progress=progress,
                timeout=self.settings.transfer_timeout_seconds,
            )
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"uploading artifacts failed: {exc}") from exc

    def _bind(self, card: Card) -> Card:
        async def loader(op: str, c: Card, path: str | None) -> Any:
            if op == "download":
                return await self.download_artifacts(c, path or ".")
            return await self.load_artifacts(c, path)

        card._loader = loader
        return card

    async def download_artifacts(
        self, card: Card, path: str | Path, *, progress: bool | None = None
    ) -> list[Path]:
        """Download every artifact of a registered card into `path`, each verified against its
        recorded sha256 (ArtifactIntegrityError otherwise)."""
        if card.uid is None:
            raise InvalidCommand("this card is not registered: it has no artifacts to download")
        try:
            return await transfer.download(
                self._http,
                card.uid,
                list(card.artifacts),
                Path(path),
                progress=progress,
                timeout=self.settings.transfer_timeout_seconds,
            )
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"downloading artifacts failed: {exc}") from exc

    async def load_artifacts(self, card: Card, path: str | Path | None = None) -> Card:
        """Download (verified) and rebuild the card's objects: `data` of a DataCard, `model` and
        `sample_data` of a ModelCard. Files stay in `path` (default: a new temp directory)."""
        target = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="opsml-card-"))
        await self.download_artifacts(card, target)
        return await asyncio.to_thread(transfer.rebuild, card, target)

    async def _execute(self, command: AnyCommand) -> CommandOutcome:
        # Start waiting before publishing: the API registers the waiter first, so the outcome
        # cannot be missed, and the request's round trip overlaps the Kafka produce.
        waiter = asyncio.create_task(self.wait_for(command.command_id))
        try:
            await self.publish(command)
        except BaseException:
            waiter.cancel()
            raise
        outcome = await waiter
        if outcome.status == "rejected":
            raise error_from_code(outcome.error_code, outcome.reason or "command rejected")
        return outcome

    def _target(self, card: Card) -> UUID:
        if not isinstance(card, self.card_class) or card.uid is None:
            raise InvalidCommand(
                "pass a registered card of this registry (loaded with load_card/list_cards or"
                " returned by register_card)"
            )
        return card.uid

    def _envelope(self, card: Card) -> dict[str, Any]:
        return {
            "command_id": uuid4(),
            "issued_at": datetime.now(UTC),
            "actor": _actor(),
            "registry": self.registry_type,
            "space": card.space,
            "name": card.name,
            "uid": self._target(card),
        }

    async def update_card(self, card: Card) -> Card:
        """Store the card's current tags, description, metadata and type-specific fields
        (same version, same uid). Returns the card as the registry now has it."""
        command = _command(
            UpdateCard,
            **self._envelope(card),
            tags=card.tags,
            description=card.description,
            metadata=card.metadata,
            attributes=card.attributes(),
        )
        outcome = await self._execute(command)
        assert outcome.card is not None
        return outcome.card.to_card()

    async def log_metrics(self, card: Card, metrics: list[Metric]) -> Card:
        """Append metrics to a registered run (no new version)."""
        try:  # checked again here: a Metric built with model_construct skipped its checks
            checked = [Metric.model_validate(dict(m)) for m in metrics]
        except (ValidationError, TypeError, ValueError) as exc:
            raise InvalidCommand(f"metrics: {summarize_validation(exc)}") from None
        command = _command(
            UpdateCard,
            **self._envelope(card),
            add_metrics=[m.model_dump(mode="json") for m in checked],
        )
        outcome = await self._execute(command)
        assert outcome.card is not None
        return outcome.card.to_card()

    async def delete_card(self, card: Card) -> None:
        """Delete a card. Its version number stays taken and the event log keeps a tombstone;
        pipeline and project cards cannot be deleted."""
        await self._execute(_command(DeleteCard, **self._envelope(card)))

    async def register_cards(
        self,
        cards: list[Card],
        version_type: str | VersionType = VersionType.MINOR,
    ) -> list[CommandOutcome]:
        """Register many cards fast: publish every command without waiting on each, then wait
        once. Returns one outcome per card, in order; registered cards get version/uid set,
        rejected ones are left untouched (their outcome says why) - nothing is raised for them.

        The commands partition is sequenced in order, so once the last command has an outcome
        every earlier one has too; the rest are fetched in bulk.
        """
        for card in cards:
            if (
                card._pending
                or getattr(card, "data", None) is not None
                or getattr(card, "model", None) is not None
            ):
                raise InvalidCommand(
                    "register_cards is the metadata-only fast path; register cards that carry"
                    " data, models or files with register_card"
                )
        commands = [self._command_for(card, version_type, None) for card in cards]
        if not commands:
            return []
        cfg = await self.config()
        producer = await self._get_producer()
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
            sign = await self.config()
            acks = []
            batch = producer.create_batch()
            for key, payload in zip(keys, payloads, strict=True):
                headers = self._signed(sign, payload) or []
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
        await self.wait_for(commands[-1].command_id)
        found: dict[UUID, CommandOutcome] = {}
        ids = [c.command_id for c in commands]
        for i in range(0, len(ids), BULK_CHUNK):
            resp = await self._request(
                "POST",
                "/api/v1/commands/outcomes",
                json={"command_ids": [str(x) for x in ids[i : i + BULK_CHUNK]]},
            )
            for o in OutcomeList.model_validate_json(resp.content).outcomes:
                found[o.command_id] = o
        outcomes = []
        for card, cmd in zip(cards, commands, strict=True):
            out = found.get(cmd.command_id) or await self.wait_for(cmd.command_id)
            if out.status == "registered":
                card.version, card.uid, card.created_at = out.version, out.uid, out.decided_at
            outcomes.append(out)
        return outcomes

    # ---- queries ----------------------------------------------------------------------------

    async def list_page(
        self,
        *,
        space: str | None = None,
        name: str | None = None,
        version: str | None = None,
        uid: UUID | str | None = None,
        tags: dict[str, str] | None = None,
        max_date: datetime | None = None,
        limit: int = 100,
        sort_by_timestamp: bool = False,
        ignore_release_candidates: bool = False,
        include_deleted: bool = False,
        cursor: str | None = None,
    ) -> CardList:
        """One page of records (with `next_cursor` when there is more)."""
        resp = await self._get(
            "/api/v1/cards",
            registry=self.registry_type.value,
            space=space,
            name=name,
            version=version,
            uid=uid,
            tag=[f"{k}:{v}" for k, v in (tags or {}).items()] or None,
            max_date=max_date.isoformat() if max_date else None,
            limit=limit,
            sort_by_timestamp=sort_by_timestamp or None,
            ignore_release_candidates=ignore_release_candidates or None,
            include_deleted=include_deleted or None,
            cursor=cursor,
        )
        return CardList.model_validate(resp.json())

    async def list_records(self, **filters: Any) -> list[CardOut]:
        return (await self.list_page(**filters)).cards

    async def list_cards(self, **filters: Any) -> list[Card]:
        """Cards of this registry matching every filter, newest version first.

        Filters: space, name, version (exact, '1.*', '1.2.*', '^1.2.0', '~1.2.0', '>=1.2,<2'),
        uid, tags (all must match), max_date, limit, sort_by_timestamp,
        ignore_release_candidates, include_deleted, cursor."""
        return [self._bind(r.to_card()) for r in await self.list_records(**filters)]

    async def iter_cards(self, **filters: Any) -> AsyncIterator[Card]:
        """Every matching card, page by page."""
        cursor = None
        while True:
            page = await self.list_page(**filters, cursor=cursor)
            for record in page.cards:
                yield self._bind(record.to_card())
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def load_card(
        self,
        *,
        uid: UUID | str | None = None,
        space: str | None = None,
        name: str | None = None,
        version: str | None = None,
        include_prereleases: bool = False,
    ) -> Card:
        """One card: by uid, or the newest version of space/name matching `version` (a
        constraint as in list_cards). Pre-releases are not "newest" unless
        `include_prereleases`, or `version` names one exactly."""
        if uid is None and name is None:
            raise InvalidCommand(
                "load_card needs a uid, or a name (with space, optionally version)"
            )
        if uid is not None:
            record = CardOut.model_validate((await self._get(f"/api/v1/cards/{uid}")).json())
            if record.registry != self.registry_type:
                raise WrongRegistry(
                    f"card {uid} is in the {record.registry.value!r} registry, not"
                    f" {self.registry_type.value!r}"
                )
            return self._bind(record.to_card())
        exact_pre = version is not None and "-" in version and version[0].isdigit()
        found = await self.list_records(
            space=space,
            name=name,
            version=version,
            limit=1,
            ignore_release_candidates=not (include_prereleases or exact_pre),
        )
        if not found:
            wanted = f"{space or '*'}/{name}" + (f" version {version}" if version else "")
            raise CardNotFound(f"no {self.registry_type.value} card {wanted}")
        return self._bind(found[0].to_card())

    async def lineage(self, card: Card | UUID | str) -> Lineage:
        """Cards this card points at (upstream) and cards that point at it (downstream)."""
        uid = card.uid if isinstance(card, Card) else card
        return Lineage.model_validate((await self._get(f"/api/v1/cards/{uid}/lineage")).json())

    async def run_metrics(
        self, runs: list[Card | UUID | str], names: list[str] | None = None
    ) -> RunMetrics:
        """Metrics by name and step, and parameters, of one or more runs side by side."""
        uids = [r.uid if isinstance(r, Card) else r for r in runs]
        resp = await self._get("/api/v1/runs/metrics", uid=[str(u) for u in uids], name=names)
        return RunMetrics.model_validate(resp.json())


class _LoopThread:
    """One background event loop per process, so the sync API works even where a loop is
    already running (Jupyter)."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = eventloop.new_event_loop()  # uvloop when installed
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="opsml-client", daemon=True
        )
        self.thread.start()
        # strong references: a registry nobody closed is closed by CardRegistry.__del__ or at exit
        self.open: set[AsyncCardRegistry] = set()
        atexit.register(self._close_all)

    def _close_all(self) -> None:
        """Registries nobody closed still flush and disconnect cleanly at interpreter exit."""
        for reg in list(self.open):
            try:
                self.run(reg.close())
            except Exception:
                pass

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _LoopThread()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class CardRegistry:
    """The synchronous registry: the same methods as AsyncCardRegistry, blocking."""

    def __init__(
        self,
        registry_type: str | RegistryType,
        *,
        tracking_uri: str | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        self._runner = _LoopThread.get()

        async def make() -> AsyncCardRegistry:
            return AsyncCardRegistry(registry_type, tracking_uri=tracking_uri, settings=settings)

        self._async = self._runner.run(make())
        self._runner.open.add(self._async)
        self.registry_type = self._async.registry_type

    def __enter__(self) -> CardRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.open.discard(self._async)
        self._runner.run(self._async.close())

    def __del__(self) -> None:
        # `CardRegistry("run").register_card(...)` on a throw-away object: close it in the
        # background instead of leaving a Kafka producer open until exit.
        runner = getattr(self, "_runner", None)
        reg = getattr(self, "_async", None)
        if runner is None or reg is None or reg not in runner.open:
            return
        runner.open.discard(reg)
        if runner.loop.is_running():
            asyncio.run_coroutine_threadsafe(reg.close(), runner.loop)

    def register_card(
        self,
        card: Card,
        version_type: str | VersionType = VersionType.MINOR,
        version: str | None = None,
        *,
        pre_tag: str = "rc",
        build_tag: str = "build",
        progress: bool | None = None,
    ) -> Card:
        registered = self._runner.run(
            self._async.register_card(
                card, version_type, version, pre_tag=pre_tag, build_tag=build_tag, progress=progress
            )
        )
        return self._bind(registered)

    def update_card(self, card: Card) -> Card:
        return self._runner.run(self._async.update_card(card))

    def delete_card(self, card: Card) -> None:
        self._runner.run(self._async.delete_card(card))

    def log_metrics(self, card: Card, metrics: list[Metric]) -> Card:
        return self._runner.run(self._async.log_metrics(card, metrics))

    def lineage(self, card: Card | UUID | str) -> Lineage:
        return self._runner.run(self._async.lineage(card))

    def run_metrics(
        self, runs: list[Card | UUID | str], names: list[str] | None = None
    ) -> RunMetrics:
        return self._runner.run(self._async.run_metrics(runs, names))

    def list_page(self, **filters: Any) -> CardList:
        return self._runner.run(self._async.list_page(**filters))

    def _bind(self, card: Card) -> Card:
        def loader(op: str, c: Card, path: str | None) -> Any:
            if op == "download":
                return self.download_artifacts(c, path or ".")
            return self.load_artifacts(c, path)

        card._loader = loader
        return card

    def list_cards(self, **filters: Any) -> list[Card]:
        return [self._bind(c) for c in self._runner.run(self._async.list_cards(**filters))]

    def load_card(self, **filters: Any) -> Card:
        return self._bind(self._runner.run(self._async.load_card(**filters)))

    def download_artifacts(
        self, card: Card, path: str | Path, *, progress: bool | None = None
    ) -> list[Path]:
        return self._runner.run(self._async.download_artifacts(card, path, progress=progress))

    def load_artifacts(self, card: Card, path: str | Path | None = None) -> Card:
        return self._runner.run(self._async.load_artifacts(card, path))

    def register_cards(
        self, cards: list[Card], version_type: str | VersionType = VersionType.MINOR
    ) -> list[CommandOutcome]:
        return self._runner.run(self._async.register_cards(cards, version_type))


__all__ = ["AsyncCardRegistry", "CardRegistry", "RegistryError"]
