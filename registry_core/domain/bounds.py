"""What the store can hold (pure): the bounds every command, card and event field is checked to.

A value a schema accepts must be one Postgres and the event archive can store, or the sequencer
publishes an event its projection then cannot write. The limits, and where each comes from:

* text (keys included, at any depth): no U+0000 (Postgres `text` and `json` cannot hold it) and
  no lone surrogate (U+D800-U+DFFF: not encodable as UTF-8, so no driver can send it);
* integers in JSON values: 64-bit signed (`bigint` columns, and what the encoders write);
  narrower fields say so (run_metrics.step and the event epoch are `integer`);
* floats: finite (JSON has no NaN or infinity; encoders silently write them as null);
* datetimes: inside 0001-01-01 .. 9999-12-31 once converted to UTC (what Python and asyncpg can
  represent; `0001-01-01T00:00:00+01:00` is year 0 in UTC). A datetime without a timezone is
  taken as UTC, as the projection stores it, and made aware here so no reader has to guess;
* nesting: at most `MAX_JSON_DEPTH` levels inside any field (the encoders stop at about 250
  levels of the whole document, and a field sits a few levels deep in an event).

`storable_problem` walks any value once and says where the first problem is; the model base
`Storable` runs it over every field of a model that takes input (commands, cards and their
parts), so a field added later is covered without being listed anywhere. A model decoded from
JSON text whose bytes already prove it clean (`json_text_storable`: the usual case) skips the
walk. `Record`s (the card record in events) hold values checked where they entered and are read
back as stored, so they are not walked again. Narrower per-field bounds are `Annotated` types
at the end (a datetime within the calendar in UTC, `integer` and `bigint` columns, and text the
registry writes itself, made storable rather than refused).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator

from registry_core.domain.errors import clip, printable

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_JSON_DEPTH = 200

NUL = "contains a NUL character (U+0000), which the registry cannot store; remove it"
SURROGATE = (
    "contains a lone surrogate (U+D800-U+DFFF), which is not valid Unicode text and cannot be"
    " stored; fix the string's encoding"
)


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if "\x00" in text:
        return NUL
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE
    return None


def as_utc(value: datetime) -> datetime:
    """`value` in UTC (a naive one is taken as UTC); ValueError when that leaves the calendar
    Python and Postgres clients share (years 1-9999)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is outside 0001-01-01..9999-12-31 once converted to UTC,"
            " which the registry cannot store; use a time within that range"
        ) from None


def datetime_problem(value: datetime) -> str | None:
    try:
        as_utc(value)
    except ValueError as exc:
        return str(exc)
    return None


def int_problem(value: int, low: int = INT64_MIN, high: int = INT64_MAX) -> str | None:
    if low <= value <= high:
        return None
    shown = clip(value, 40) if abs(value) < 10**4000 else "a number of over 4000 digits"
    return f"{shown} is outside {low}..{high}, which the registry cannot store"


def _path(where: str, segments: list[object]) -> str:
    """`where` then the keys and indexes (given leaf first) down to a problem; a deep one shows
    its first levels and how many more."""
    out = where
    order = segments[::-1]
    for seg in order[:8]:
        if isinstance(seg, int) and not isinstance(seg, bool):
            out = f"{out}[{seg}]"
        else:
            shown = clip(seg, 40) if isinstance(seg, str) else clip(repr(seg), 40)
            out = f"{out}.{shown}" if out else shown
    if len(order) > 8:
        out = f"{out}... ({len(order) - 8} levels more)"
    return out or "(value)"


def storable_problem(value: Any, where: str = "") -> tuple[str, str] | None:
    """(where, why) of the first part of `value` the store cannot hold, or None.

    Knows JSON values, the datetimes, UUIDs and enums a model holds, and models (walked field by
    field, except those that checked themselves on construction: `Storable` ones). Other objects
    are left alone: what they serialise to is checked where it is decoded."""
    found = _walk(value, 0)
    if found is None:
        return None
    return _path(where, found[0]), found[1]


_DEEP = f"nested over {MAX_JSON_DEPTH} levels deep, more than the registry stores"

# (the path is built only for a problem: segments are appended on the way back up)
Found = tuple[list[object], str]


def _walk(v: Any, depth: int) -> Found | None:
    t = type(v)
    if t is str:
        if "\x00" not in v and v.isascii():
            return None
        problem = text_problem(v)
        return None if problem is None else ([], problem)
    if v is None or t is bool:
        return None
    if t is int:
        return None if INT64_MIN <= v <= INT64_MAX else ([], int_problem(v) or "")
    if t is float:
        return (
            None
            if math.isfinite(v)
            else ([], f"{v} is not a finite number, which JSON cannot carry")
        )
    if t is dict:
        if not v:
            return None
        if depth >= MAX_JSON_DEPTH:
            return [], _DEEP
        for k, item in v.items():
            if type(k) is str and ("\x00" in k or not k.isascii()):
                problem = text_problem(k)
                if problem is not None:
                    return [], f"key {printable(clip(k, 40))!r} {problem}"
            # (the plain cases inline: most values of a card are short ASCII text or numbers)
            ti = type(item)
            if ti is str:
                if "\x00" not in item and item.isascii():
                    continue
            elif item is None or ti is bool:
                continue
            elif ti is int:
                if INT64_MIN <= item <= INT64_MAX:
                    continue
            elif (ti is dict or ti is list) and not item:
                continue
            found = _walk(item, depth + 1)
            if found is not None:
                found[0].append(k)
                return found
        return None
    if t is list:
        if not v:
            return None
        if depth >= MAX_JSON_DEPTH:
            return [], _DEEP
        for i, item in enumerate(v):
            ti = type(item)
            if ti is str:
                if "\x00" not in item and item.isascii():
                    continue
            elif ti is int:
                if INT64_MIN <= item <= INT64_MAX:
                    continue
            found = _walk(item, depth + 1)
            if found is not None:
                found[0].append(i)
                return found
        return None
    return _walk_other(v, depth)


def _walk_other(v: Any, depth: int) -> Found | None:
    """The types a JSON document does not hold (met on the Python side of a model)."""
    if isinstance(v, datetime):
        problem = datetime_problem(v)
        return None if problem is None else ([], problem)
    if isinstance(v, Storable | Record | UUID | date | time):
        return None  # checked on construction / always storable
    if isinstance(v, Enum):
        return _walk(v.value, depth)
    if isinstance(v, str):  # subclasses of the JSON types
        return _walk(str(v), depth)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return _walk(int(v), depth)
    if isinstance(v, float):
        return _walk(float(v), depth)
    if isinstance(v, bytes | bytearray):
        return ([], NUL) if b"\x00" in v else None
    if isinstance(v, Mapping):
        return _walk(dict(v), depth)
    if isinstance(v, list | tuple | set | frozenset):
        return _walk(list(v), depth)
    if isinstance(v, BaseModel):
        if depth >= MAX_JSON_DEPTH:
            return [], _DEEP
        for name, info in type(v).model_fields.items():
            if not info.exclude:
                found = _walk(getattr(v, name, None), depth + 1)
                if found is not None:
                    found[0].append(name)
                    return found
    return None


# every digit as "0", everything else as " ": a run of 19 zeros is a run of 19 digits (a
# translate and a substring search: several times faster than a regular expression)
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN = b"0" * 19

# Validation context of a model decoded from JSON text that `json_text_storable` cleared.
WIRE_CHECKED: dict[str, bool] = {"wire_checked": True}


def json_text_storable(raw: bytes) -> bool:
    """True when a document orjson decoded from `raw` can hold nothing the store refuses, told
    from the bytes alone (C-speed scans): orjson refuses lone surrogates, NaN and infinity and
    gives string keys; U+0000 can only come from a `\\u0000` escape; an integer past 64 bits
    needs 19 digits in a row; nesting is at most the number of brackets. False means "walk the
    decoded values": not necessarily a problem."""
    return (
        b"\\u0000" not in raw
        and _NINETEEN not in raw.translate(_DIGITS)
        and raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH
    )


# a JSON string (skipped whole) or a JSON number (integer part, fraction, exponent)
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|(-?[0-9]+)(\.[0-9]+)?([eE][+-]?[0-9]+)?')


def big_json_integer(raw: bytes) -> str | None:
    """The first integer literal of JSON text `raw` outside 64 bits, or None. A decoder reads one
    as a float (orjson does, past 64 bits), silently changing the number; the registry refuses
    it instead. Only text with 19 digits in a row is scanned (rare), one token at a time."""
    if _NINETEEN not in raw.translate(_DIGITS):
        return None
    for token in _JSON_TOKEN.finditer(raw):
        digits, fraction, exponent = token.groups()
        if digits is not None and fraction is None and exponent is None and len(digits) >= 19:
            text = digits.decode("ascii")
            if len(text.lstrip("-")) > 20 or not INT64_MIN <= int(text) <= INT64_MAX:
                return text
    return None


def path_of_number(value: Any, literal: str) -> str | None:
    """Where in a decoded document the integer `literal` (or the float a decoder made of it)
    sits."""
    if len(literal) > 400:
        return None  # (no decoder reads a number that large)
    number = int(literal)
    try:
        approx = float(number)
    except OverflowError:
        approx = math.inf
    stack: list[tuple[list[object], Any]] = [([], value)]
    while stack:
        path, v = stack.pop()
        t = type(v)
        if (t is int and v == number) or (t is float and v == approx):
            return _path("", path)
        if t is dict:
            stack.extend(([k, *path], item) for k, item in v.items())
        elif t is list:
            stack.extend(([i, *path], item) for i, item in enumerate(v))
    return None


class Storable(BaseModel):
    """A model whose every serialised field is checked to what the store can hold (after the
    field's own validation): when it is built, and when a field is assigned. Nested `Storable`
    models check themselves; an instance handed in as a field value is not checked again (a
    card's list of 20,000 metrics is re-validated on every `log_metric`).

    Fields whose type cannot hold anything unstorable (uuids, bools, literals, enums, nested
    `Storable` models, the bounded types below) are skipped. (Measured: walking a small command's
    dicts in Python costs less than a round trip through the C encoder would.)"""

    def model_post_init(self, context: Any, /) -> None:
        # (runs once per model built by validation, and in model_construct; a ValueError here
        # is reported by pydantic as a validation error at the model's location)
        if context is WIRE_CHECKED:
            return  # decoded from JSON text that `json_text_storable` cleared
        values = self.__dict__
        for name in _checked_fields(type(self)):
            v = values.get(name)
            t = type(v)
            if v is None:
                continue
            if t is str:
                if "\x00" not in v and (v.isascii() or text_problem(v) is None):
                    continue
            elif t is int:
                if INT64_MIN <= v <= INT64_MAX:
                    continue
            found = _walk(v, 0)
            if found is not None:
                raise ValueError(f"{_path(name, found[0])}: {found[1]}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _checked_fields(type(self)):
            found = _walk(value, 0)
            if found is not None:
                raise ValueError(f"{_path(name, found[0])}: {found[1]}")
        super().__setattr__(name, value)


class Record(BaseModel):
    """A record of values checked where they entered (a command, a card) and derived from them by
    the sequencer: not walked again. Records are also read back from the log and the tables,
    and must load whatever those hold - including what an older, looser version accepted -
    so a stricter rule added later cannot turn a stored card into one the worker or the API
    fails on. (What a record holds is checked from the outside by the property tests on
    `handle`, and the projection sets aside an event its tables refuse.)"""


_CHECKED: dict[type[BaseModel], tuple[str, ...]] = {}


def _checked_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    names = _CHECKED.get(cls)
    if names is None:
        names = _CHECKED[cls] = tuple(
            name
            for name, info in cls.model_fields.items()
            # an excluded field is never serialised: it never reaches the store (a DataFrame)
            if not info.exclude and not _always_storable(info.annotation, info.metadata)
        )
    return names


def _always_storable(tp: Any, metadata: Sequence[Any] = ()) -> bool:
    """Whether every value a field of this type validates to is storable without a check."""
    if any(getattr(m, "func", None) in _BOUNDED for m in metadata):
        return True
    if tp is type(None) or tp is UUID or tp is bool:
        return True
    origin = get_origin(tp)
    if origin is Literal:
        return True  # the schema's own constants
    if origin is Annotated:
        base, *meta = get_args(tp)
        return _always_storable(base, meta)
    if origin is Union or origin is UnionType:
        return all(_always_storable(a) for a in get_args(tp))
    if origin is list or origin is tuple:
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return bool(args) and all(_always_storable(a) for a in args)
    return isinstance(tp, type) and issubclass(tp, Enum | Storable | Record)


# ---- bounded field types ---------------------------------------------------------------------


def _datetime(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value  # (the sequencer's clock and most clients: nothing to shift)
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    as_utc(value)
    return value


def _int32(value: int) -> int:
    problem = int_problem(value, -(2**31), INT32_MAX)
    if problem is not None:
        raise ValueError(problem)
    return value


def _int64(value: int) -> int:
    problem = int_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


_BOUNDED: set[Any] = set()


def _safe_text(value: Any) -> Any:
    """Text the registry writes itself (a rejection's reason): made storable, never refused,
    so a message that quotes bad input cannot stop the worker."""
    return printable(value) if isinstance(value, str) else value


_BOUNDED.update((_datetime, _int32, _int64, _safe_text))

# a datetime that stays within the calendar in UTC; naive values become UTC
StoredDatetime = Annotated[datetime, AfterValidator(_datetime)]
# integers for `integer` / `bigint` columns
Int32 = Annotated[int, AfterValidator(_int32)]
Int64 = Annotated[int, AfterValidator(_int64)]
# text the registry composes (reasons, codes): storable by construction
SafeText = Annotated[str, BeforeValidator(_safe_text)]
