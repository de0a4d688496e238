"""Bytes <-> commands and events. Decoding never raises anything but `RegistryError` subclasses.

Old event shapes keep loading: `UPCASTERS[(type, n)]` turns a schema-version-n payload into n+1,
applied in a chain until the current version is reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from registry_core.domain.commands import COMMAND_SCHEMA_VERSION, AnyCommand, Command
from registry_core.domain.errors import (
    InvalidCommand,
    RegistryError,
    UnsupportedSchemaVersion,
    clip,
    summarize_validation,
)
from registry_core.domain.events import EVENT_SCHEMA_VERSION, Event

_command_adapter: TypeAdapter[AnyCommand] = TypeAdapter(Command)
_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json"))


@dataclass(frozen=True)
class UndecodableCommand:
    """What could be salvaged from a message that is not a valid command."""

    error: RegistryError
    command_id: UUID | None
    registry: str | None = None
    space: str | None = None
    name: str | None = None


def _salvage_uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def _short(exc: ValidationError) -> str:
    return summarize_validation(exc)


def _nul_at(value: Any) -> str | None:
    """Where U+0000 sits in a decoded command ("metadata.note"), if anywhere: Postgres text and
    jsonb cannot hold it."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return where or "(message)"
        elif isinstance(v, dict):
            for k, item in v.items():
                here = f"{where}.{clip(k, 40)}" if where else clip(k, 40)
                if "\x00" in str(k):
                    return here
                stack.append((here, item))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(v))
    return None


def decode_command(raw: bytes | None, *, max_bytes: int) -> AnyCommand | UndecodableCommand:
    if raw is None:
        return UndecodableCommand(InvalidCommand("empty message (no value)"), None)
    if len(raw) > max_bytes:
        cid = None
        head = raw[:4096]
        marker = b'"command_id":"'
        at = head.find(marker)
        if at >= 0:
            cid = _salvage_uuid(
                head[at + len(marker) : at + len(marker) + 36].decode(errors="replace")
            )
        return UndecodableCommand(
            InvalidCommand(
                f"command is {len(raw)} bytes, over the {max_bytes}-byte limit; large content"
                " belongs in artifacts, not in card metadata"
            ),
            cid,
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return UndecodableCommand(InvalidCommand(f"message is not valid JSON: {exc}"), None)
    if not isinstance(data, dict):
        return UndecodableCommand(
            InvalidCommand(f"a command must be a JSON object, got {type(data).__name__}"), None
        )
    # (the command id is salvaged only for a command that fails: a valid one carries it)
    # orjson refuses raw control characters inside strings, so a decoded U+0000 can only come
    # from the escape `\u0000`: without one in the bytes, there is nothing to look for.
    nul = _nul_at(data) if b"\\u0000" in raw else None
    if nul is not None:
        return UndecodableCommand(
            InvalidCommand(
                f"{nul}: invalid, contains a NUL character (U+0000), which the registry cannot"
                " store; remove it"
            ),
            _salvage_uuid(data.get("command_id")),
        )
    version = data.get("schema_version", COMMAND_SCHEMA_VERSION)
    if version != COMMAND_SCHEMA_VERSION:
        return UndecodableCommand(
            UnsupportedSchemaVersion(
                f"command schema_version {clip(repr(version), 40)} is not supported (this worker"
                f" reads version {COMMAND_SCHEMA_VERSION}); upgrade the worker or use a matching"
                " client"
            ),
            _salvage_uuid(data.get("command_id")),
            **_where(data),
        )
    try:
        return _command_adapter.validate_python(data)
    except ValidationError as exc:
        return UndecodableCommand(
            InvalidCommand(f"invalid command: {_short(exc)}"),
            _salvage_uuid(data.get("command_id")),
            **_where(data),
        )


def _where(data: dict[str, Any]) -> dict[str, Any]:
    """The key of a command that failed to decode, where it can tell (for its rejection)."""
    return {
        k: data.get(k) if isinstance(data.get(k), str) and len(data[k]) <= 64 else None
        for k in ("registry", "space", "name")
    }


def upcast_event(data: dict[str, Any]) -> dict[str, Any]:
    version = data.get("schema_version", 1)
    kind = data.get("type", "")
    while isinstance(version, int) and version < EVENT_SCHEMA_VERSION:
        step = UPCASTERS.get((kind, version))
        if step is None:
            raise UnsupportedSchemaVersion(f"no upcaster for {kind} v{version}")
        data = step(data)
        version = data["schema_version"] = version + 1
    return data


def decode_event(raw: bytes | str | dict[str, Any]) -> Event:
    data = raw if isinstance(raw, dict) else orjson.loads(raw)
    if data.get("schema_version", 1) > EVENT_SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"event schema_version {data.get('schema_version')} is newer than this reader"
            f" ({EVENT_SCHEMA_VERSION}); upgrade opsml-registry"
        )
    return _event_adapter.validate_python(upcast_event(data))
