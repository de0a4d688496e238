"""Wire-level test data shared by unit and integration tests: a valid RegisterCard payload to
mutate, and the name rule restated independently of registry_core/domain/names.py."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

_NAME_CHARS = set(string.ascii_lowercase + string.digits + "-")


def command(**overrides: Any) -> dict[str, Any]:
    """A valid RegisterCard as it travels on Kafka, with `overrides` applied."""
    body: dict[str, Any] = {
        "type": "register_card",
        "schema_version": 1,
        "command_id": str(uuid4()),
        "issued_at": datetime.now(UTC).isoformat(),
        "registry": "run",
        "space": "demo",
        "name": "churn",
        "card_type": "RunCard",
    }
    body.update(overrides)
    return body


def obeys_name_rule(value: object) -> bool:
    """1-64 of [a-z0-9-], not starting or ending with '-' (ASCII only: no homoglyphs)."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 64
        and set(value) <= _NAME_CHARS
        and value[0] != "-"
        and value[-1] != "-"
    )


# ---- what the store can hold, restated independently of registry_core/domain/bounds.py -------
# (Postgres text/json/jsonb: no U+0000, valid UTF-8; bigint; timestamptz within the years
# Python's datetime and asyncpg share, 1-9999, in UTC; JSON has no NaN or infinity.)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def utc_in_calendar(value: datetime | str) -> bool:
    """Whether a time stays within 0001-01-01..9999-12-31 once shifted to UTC."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        return True
    try:
        when.astimezone(UTC)
    except OverflowError:
        return False
    return True


def unstorable(value: Any, where: str = "") -> str | None:
    """Where a decoded JSON value holds something no column can (keys included), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where}: NUL"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where}: lone surrogate"
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"{where}: int {value}"
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else f"{where}: {value}"
    if isinstance(value, dict):
        for k, v in value.items():
            found = unstorable(k, f"{where} key") or unstorable(v, f"{where}.{k!r}")
            if found:
                return found
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = unstorable(v, f"{where}[{i}]")
            if found:
                return found
    return None


def depth(value: Any) -> int:
    """Levels of nested containers (a scalar: 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# ---- full-range generators (hypothesis), for properties on the codec and on a live worker ----


def extremes() -> Any:
    """hypothesis strategies over the full ranges a hostile client can send: text with NUL and
    lone surrogates (as keys too), 64-bit-and-beyond integers, non-finite floats, datetimes over
    the whole calendar with offsets up to +/-14 h. Imported lazily: hypothesis is a test-only
    dependency and this module is shared."""
    from datetime import timedelta, timezone
    from types import SimpleNamespace

    from hypothesis import strategies as st

    text = st.one_of(
        st.text(max_size=12),
        st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
        st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfffy", "\U0001f4a9", "a" * 300]),
    )
    integers = st.one_of(
        st.integers(-(2**31), 2**31),
        st.integers(-(2**70), 2**70),
        st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1,
                         2**64, -(2**64), 2**100]),
    )  # fmt: skip
    offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    datetimes = st.one_of(
        st.datetimes(datetime.min, datetime.max, timezones=st.one_of(st.none(), offsets)),
        st.sampled_from([
            datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
            datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
            datetime.min.replace(tzinfo=timezone(timedelta(hours=-14))),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=14))),
            datetime.max.replace(tzinfo=UTC),
            datetime.min.replace(tzinfo=UTC),
        ]),
    )  # fmt: skip
    floats = st.floats(allow_nan=True, allow_infinity=True)
    scalars = st.one_of(st.none(), st.booleans(), integers, floats, text)
    json_values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)
        ),
        max_leaves=8,
    )
    return SimpleNamespace(
        text=text, integers=integers, datetimes=datetimes, floats=floats, scalars=scalars,
        json=json_values, offsets=offsets,
    )  # fmt: skip


def hostile_commands(
    targets: list[dict[str, Any]], doomed: list[dict[str, Any]] | None = None
) -> Any:
    """A strategy of command bodies (JSON-ready dicts, `command_id` "<cid>" to fill in) of every
    type - a registration of each card type, an update, a metrics append, a delete - whose
    fields, keys included, are drawn over the full ranges of `extremes()`. `targets` are
    registered cards ({"uid", "registry", "space", "name", "card_type"}) to update; deletes go
    to `doomed` when given (so that updates keep live targets), else to `targets` too."""
    from hypothesis import strategies as st

    from registry_core.domain.cards import CARD_CLASSES, Card

    x = extremes()
    iso = x.datetimes.map(lambda d: d.isoformat())
    metric = st.fixed_dictionaries(
        {"name": st.one_of(st.just("loss"), x.text)},
        optional={"value": st.one_of(x.floats, x.integers), "step": x.integers, "timestamp": iso},
    )
    shaped = {
        "metrics": st.lists(metric, max_size=3),
        "parameters": st.dictionaries(x.text, x.scalars, max_size=3),
        "comments": st.lists(
            st.fixed_dictionaries({"author": x.text, "comment": x.text, "timestamp": iso}),
            max_size=2,
        ),
        "questionnaire": st.dictionaries(
            x.text, st.fixed_dictionaries({"question": x.text, "response": x.text}), max_size=2
        ),
        "data_splits": st.lists(
            st.fixed_dictionaries(
                {"label": st.one_of(st.just("train"), x.text)},
                optional={
                    "column": x.text,
                    "value": x.json,
                    "start": x.integers,
                    "stop": x.integers,
                },
            ),
            max_size=2,
        ),
        "feature_map": st.dictionaries(x.text, x.text, max_size=3),
        "framework_versions": st.dictionaries(x.text, x.text, max_size=3),
        "model_init_kwargs": st.dictionaries(x.text, x.json, max_size=3),
        "row_count": x.integers,
    }

    def attributes(card_type: str) -> Any:
        fields = [f for f in CARD_CLASSES[card_type].model_fields if f not in Card.model_fields]
        fields = [f for f in fields if not f.endswith("_uid") and not f.endswith("_uids")]
        if not fields:
            return st.just({})
        return st.dictionaries(
            st.sampled_from(fields),
            st.one_of(*(shaped[f] for f in fields if f in shaped), x.text, x.json)
            if any(f in shaped for f in fields)
            else st.one_of(x.text, x.json),
            max_size=3,
        )

    envelope = {
        "type": None,
        "schema_version": 1,
        "command_id": "<cid>",
    }

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        kind = draw(st.sampled_from(["register", "register", "update", "metrics", "delete"]))
        body: dict[str, Any] = dict(envelope)
        body["issued_at"] = draw(st.one_of(st.just(datetime.now(UTC).isoformat()), iso))
        if draw(st.booleans()):
            body["actor"] = draw(st.one_of(st.none(), x.text))
        if kind == "register" or not targets:
            card_type = draw(st.sampled_from(sorted(CARD_CLASSES)))
            body.update(
                type="register_card",
                card_type=card_type,
                registry=CARD_CLASSES[card_type].registry_type.value,
                space="gen",
                name=draw(st.sampled_from(["a", "b", "c"])),
                attributes=draw(attributes(card_type)),
            )
            if draw(st.booleans()):
                body["artifacts"] = [
                    {"path": "f.bin", "sha256": "0" * 64, "size": draw(x.integers)}
                ]
        else:
            pool = doomed if kind == "delete" and doomed else targets
            target = draw(st.sampled_from(pool))
            body.update(
                type="delete_card" if kind == "delete" else "update_card",
                uid=str(target["uid"]),
                registry=target["registry"],
                space=target["space"],
                name=target["name"],
            )
            if kind == "metrics":
                body["add_metrics"] = draw(st.lists(metric, min_size=1, max_size=3))
            elif kind == "update":
                body["attributes"] = draw(attributes(target["card_type"]))
        if body["type"] != "delete_card":
            for field, values in (
                ("tags", st.dictionaries(x.text, x.text, max_size=3)),
                ("metadata", st.dictionaries(x.text, x.json, max_size=3)),
                ("description", x.text),
            ):
                if draw(st.booleans()):
                    body[field] = draw(values)
        return body

    return build()


def must_be_refused(body: dict[str, Any]) -> str | None:
    """Why the registry must not store this command (restated from the store's limits), or None
    when it may go either way (business rules decide)."""
    found = unstorable(body)
    if found:
        return found

    def items(value: Any) -> list[Any]:
        return value if isinstance(value, list) else []

    times = [body.get("issued_at")]
    attrs: dict[str, Any] = body["attributes"] if isinstance(body.get("attributes"), dict) else {}
    for m in [*items(attrs.get("metrics")), *items(body.get("add_metrics"))]:
        times.append(m.get("timestamp") if isinstance(m, dict) else None)
    for c in items(attrs.get("comments")):
        times.append(c.get("timestamp") if isinstance(c, dict) else None)
    for t in times:
        if isinstance(t, str) and not utc_in_calendar(t):
            return f"time {t} leaves the calendar in UTC"
    if depth(body) > 200 + 1:
        return "nested too deep"
    return None
