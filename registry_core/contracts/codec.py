"""Bytes <-> commands and events. Decoding never raises anything but `RegistryError` subclasses.

Old event shapes keep loading: `UPCASTERS[(type, n)]` turns a schema-version-n payload into n+1,
applied in a chain until the current version is reached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from registry_core.domain.bounds import (
    INT64_MAX,
    INT64_MIN,
    WIRE_CHECKED,
    big_json_integer,
    json_text_storable,
    path_of_number,
)
from registry_core.domain.cards import plain_json
from registry_core.domain.commands import COMMAND_SCHEMA_VERSION, AnyCommand, Command
from registry_core.domain.errors import (
    InvalidCommand,
    InvalidName,
    RegistryError,
    UnsupportedSchemaVersion,
    clip,
    summarize_validation,
)
from registry_core.domain.events import EVENT_SCHEMA_VERSION, Event
from registry_core.domain.names import MAX_NAME_LENGTH, validate_name

_command_adapter: TypeAdapter[AnyCommand] = TypeAdapter(Command)
_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json"))


def encode_command(command: AnyCommand) -> bytes:
    """A command's wire bytes, for a client: refuses (InvalidCommand, naming the field) what the
    sequencer would refuse, before anything is published. The command model checked its values
    when it was built; values of types JSON does not have (in `metadata`, say) are checked
    again in the form they are sent, by decoding the bytes as the sequencer does."""
    try:
        payload = encode(command)
    except (ValueError, TypeError) as exc:  # PydanticSerializationError, JSONEncodeError
        raise InvalidCommand(
            f"the command cannot be written as JSON: {clip(exc, 300)}; card metadata and"
            " attributes take JSON values (text, numbers, booleans, null, lists, objects)"
        ) from exc
    fields = command.__dict__
    loose = [fields.get(f) for f in ("metadata", "attributes", "add_metrics")]
    if not all(v is None or plain_json(v) for v in loose):
        checked = decode_command(payload, max_bytes=len(payload))
        if isinstance(checked, UndecodableCommand):
            raise checked.error
    return payload


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


# An oversize message is parsed (to answer its sender) up to this size; past it, only its head
# is searched for the id. The broker's own message limit bounds what arrives at all.
SALVAGE_PARSE_BYTES = 16 * 1_048_576
SALVAGE_HEAD_BYTES = 65_536
# `"command_id"`, any JSON whitespace, `:`, whitespace, a string of up to 45 characters (a
# uuid in any form `UUID()` reads: hex, hyphens, braces, `urn:uuid:`)
_COMMAND_ID_RE = re.compile(rb'"command_id"[ \t\r\n]*:[ \t\r\n]*"([0-9A-Za-z{}:-]{32,45})"')


def _salvage_oversize(raw: bytes) -> tuple[UUID | None, dict[str, Any]]:
    """The command id (and routing key) of a message too large to be a command, so that its
    rejection reaches the sender whatever the JSON's spacing or escapes. Linear in the
    message's size: a full parse up to `SALVAGE_PARSE_BYTES`, a search of the head past it."""
    if len(raw) <= SALVAGE_PARSE_BYTES:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _salvage_invalid(raw)
        if isinstance(data, dict):
            return _salvage_uuid(data.get("command_id")), _where(data)
        return None, {}
    # too large to parse: the first "command_id" of its head
    found = _COMMAND_ID_RE.search(raw, 0, SALVAGE_HEAD_BYTES)
    return (_salvage_uuid(found.group(1).decode("ascii")) if found else None), {}


def _salvage_invalid(raw: bytes) -> tuple[UUID | None, dict[str, Any]]:
    """The command id (and key) of a message that is not strict JSON, so that its sender gets
    the rejection: a client writing with Python's json module sends a lone surrogate as an
    escape, NaN and Infinity as bare words, which Python's own decoder still reads."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # (JSONDecodeError and UnicodeDecodeError included)
        data = None
    if isinstance(data, dict):
        return _salvage_uuid(data.get("command_id")), _where(data)
    found = _COMMAND_ID_RE.search(raw, 0, SALVAGE_HEAD_BYTES)
    return (_salvage_uuid(found.group(1).decode("ascii")) if found else None), {}


def decode_command(raw: bytes | None, *, max_bytes: int) -> AnyCommand | UndecodableCommand:
    if raw is None:
        return UndecodableCommand(InvalidCommand("empty message (no value)"), None)
    if len(raw) > max_bytes:
        cid, where = _salvage_oversize(raw)
        return UndecodableCommand(
            InvalidCommand(
                f"command is {len(raw)} bytes, over the {max_bytes}-byte limit; large content"
                " belongs in artifacts, not in card metadata"
            ),
            cid,
            **where,
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        cid, where = _salvage_invalid(raw)
        return UndecodableCommand(
            InvalidCommand(f"message is not valid JSON: {clip(exc, 300)}"), cid, **where
        )
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
            **_where(data),
        )
    # every field is checked to what the store holds: from the bytes when they tell (C-speed
    # scans), else by walking the decoded values as the models validate
    clean = json_text_storable(raw)
    big = None if clean else big_json_integer(raw)
    if big is not None:  # (decoded as a float: the number would silently change)
        return UndecodableCommand(
            InvalidCommand(
                f"{path_of_number(data, big) or '(message)'}: the integer {clip(big, 40)} is"
                f" outside {INT64_MIN}..{INT64_MAX}, which the registry cannot store"
            ),
            _salvage_uuid(data.get("command_id")),
            **_where(data),
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
        return _command_adapter.validate_python(data, context=WIRE_CHECKED if clean else None)
    except ValidationError as exc:
        return UndecodableCommand(
            InvalidCommand(f"invalid command: {_short(exc)}"),
            _salvage_uuid(data.get("command_id")),
            **_where(data),
        )


def _where(data: dict[str, Any]) -> dict[str, Any]:
    """The key of a command that failed to decode, where it can tell (for its rejection): only
    a known registry and valid names (they are stored with the rejection, and name nothing
    otherwise)."""
    out: dict[str, Any] = {"registry": None, "space": None, "name": None}
    registry = data.get("registry")
    if isinstance(registry, str) and len(registry) <= 64:
        out["registry"] = registry
    for k in ("space", "name"):
        value = data.get(k)
        if isinstance(value, str) and len(value) <= MAX_NAME_LENGTH:
            try:
                out[k] = validate_name(value, field=k)
            except InvalidName:
                pass
    return out


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
    context = None
    if not isinstance(raw, dict):
        text = raw.encode() if isinstance(raw, str) else raw
        context = WIRE_CHECKED if json_text_storable(text) else None
    if data.get("schema_version", 1) > EVENT_SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"event schema_version {data.get('schema_version')} is newer than this reader"
            f" ({EVENT_SCHEMA_VERSION}); upgrade opsml-registry"
        )
    return _event_adapter.validate_python(upcast_event(data), context=context)
