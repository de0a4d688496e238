"""Hostile input against the pure core (issue 7): hypothesis tries hard to break the codec, the
decider, the card models and the version rules with bad input.

What must hold for ANY input:
* `decode_command` never raises; it returns a command or an `UndecodableCommand` whose reason is
  non-empty and short, and every decoded command carries names that obey the name rule;
* `handle` never raises for a decodable command, whatever the state: exactly one event, a
  registration/update/delete or a `CommandRejected` with a code and a reason;
* card models refuse bad names with a ValueError subclass;
* `parse_constraint` and `next_version` only ever raise `RegistryError` subclasses.

Examples are kept moderate (the file runs in well under 20 s); no example database is written.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from registry_core.contracts.codec import UndecodableCommand, decode_command, decode_event, encode
from registry_core.domain.cards import CARD_CLASSES, CardRecord, RegistryType
from registry_core.domain.commands import DeleteCard, RegisterCard, UpdateCard
from registry_core.domain.decider import Context, NameState, handle
from registry_core.domain.errors import RegistryError
from registry_core.domain.events import CardDeleted, CardRegistered, CardUpdated, CommandRejected
from registry_core.domain.versioning import MAX_PART, VersionType, next_version, parse_constraint
from registry_core.persistence.rows import card_row, json_rows, metric_rows
from tests.support.wire import (
    command,
    hostile_commands,
    must_be_refused,
    obeys_name_rule,
    unstorable,
    utc_in_calendar,
)

LIMIT = 1_048_576
MAX_REASON = 2048  # "reasonably short": a reason is read by a person, not a log dump
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = Context(now=NOW, epoch=3, command_offset=42)

FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- the name rule, restated independently of registry_core/domain/names.py -------------------


valid_names = st.from_regex(re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z"))

# ---- hostile values ----------------------------------------------------------------------------

HOSTILE_STRINGS = [
    "",
    " ",
    "\t",
    "churn\n",
    "\nchurn",
    "\x00",
    "churn\x00",
    "\u202echurn",  # right-to-left override
    "ch\u200burn",  # zero-width space
    "churn\ufeff",  # BOM
    "\u0441hurn",  # Cyrillic es: a homoglyph of 'c'
    "chu\u0433n",  # Cyrillic ghe
    "\uff43\uff48\uff55\uff52\uff4e",  # fullwidth
    "\u0130",  # lower() is two code points
    "\ufb01le",  # ligature
    "../etc/passwd",
    "..\\..\\windows\\system32",
    "/etc/passwd",
    "C:\\evil",
    "%2e%2e%2f",
    "..%2f..%2f",
    "%00",
    "..",
    ".",
    "a/b",
    "a.b",
    "' OR '1'='1",
    "'; DROP TABLE cards; --",
    '"; DELETE FROM cards; --',
    "%",
    "_",
    "\\",
    "$1",
    "NULL",
    "Churn",
    "churn_model",
    "-churn",
    "churn-",
    "a" * 65,
    "a" * 10_000,
    "\U0001f4a9",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "<script>alert(1)</script>",
]
# lone surrogates: not encodable as UTF-8; json.dumps writes them as "\ud800" escapes
SURROGATES = ["\ud800", "\udfff", "a\udc80b"]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS + SURROGATES),
    st.text(st.characters(exclude_categories=()), max_size=20),  # lone surrogates, NUL
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=60, max_size=200),
    st.integers(min_value=0, max_value=5000).map(lambda n: "x" * n),
)

hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**80),  # beyond 64 bits
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)

hostile_values = st.one_of(
    hostile_scalars,
    st.lists(hostile_scalars, max_size=4),
    st.dictionaries(hostile_text, hostile_scalars, max_size=4),
)

FIELDS = [
    "type",
    "schema_version",
    "command_id",
    "issued_at",
    "actor",
    "registry",
    "space",
    "name",
    "card_type",
    "version_type",
    "version",
    "pre_tag",
    "build_tag",
    "tags",
    "description",
    "metadata",
    "attributes",
    "uid",
    "add_metrics",
]

json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), hostile_text), inner, max_size=6),
    ),
    max_leaves=20,
)


valid_register = command


def valid_update_or_delete(kind: str, uid: UUID) -> dict[str, Any]:
    body = valid_register(type=kind, uid=str(uid))
    del body["card_type"]
    return body


def to_json(value: Any) -> bytes:
    """Python's json: escapes lone surrogates (\\ud800), writes NaN/Infinity and huge ints,
    all of which a strict decoder has to refuse politely."""
    return json.dumps(value).encode()


# ---- shared assertions ---------------------------------------------------------------------


def check_decoded(out: object) -> None:
    """The contract of decode_command's result, whatever the input was."""
    if isinstance(out, UndecodableCommand):
        assert isinstance(out.error, RegistryError)
        reason = out.error.message
        assert isinstance(reason, str) and reason.strip(), "an undecodable command needs a reason"
        assert len(reason) < MAX_REASON, f"reason is {len(reason)} characters: {reason[:200]}..."
        assert out.error.code, "the reason must carry an error code"
        assert out.command_id is None or isinstance(out.command_id, UUID)
        # salvaged routing fields are strings of at most 64 characters, or absent
        for salvaged in (out.registry, out.space, out.name):
            assert salvaged is None or (isinstance(salvaged, str) and len(salvaged) <= 64)
        return
    assert isinstance(out, RegisterCard | UpdateCard | DeleteCard), type(out)
    assert obeys_name_rule(out.space), out.space
    assert obeys_name_rule(out.name), out.name
    assert isinstance(out.registry, RegistryType)
    assert out.schema_version == 1
    assert isinstance(out.command_id, UUID)


# ---- decode_command --------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=4096))
def test_decode_never_raises_for_any_bytes(raw: bytes) -> None:
    check_decoded(decode_command(raw, max_bytes=LIMIT))


@FAST
@given(st.text(max_size=500), st.sampled_from(["utf-8", "utf-16", "latin-1", "surrogatepass"]))
def test_decode_never_raises_for_any_text(text: str, encoding: str) -> None:
    if encoding == "surrogatepass":
        raw = text.encode("utf-8", "surrogatepass")  # lone surrogates as (invalid) UTF-8 bytes
    else:
        raw = text.encode(encoding, "replace")
    check_decoded(decode_command(raw, max_bytes=LIMIT))


@FAST
@given(json_like)
def test_decode_never_raises_for_json_shaped_garbage(value: Any) -> None:
    check_decoded(decode_command(to_json(value), max_bytes=LIMIT))


@FAST
@given(
    st.sampled_from(["register_card", "update_card", "delete_card"]),
    st.sampled_from(FIELDS),
    hostile_values,
    st.booleans(),
)
def test_decode_valid_command_with_one_hostile_field(
    kind: str, field: str, value: Any, drop: bool
) -> None:
    # KNOWN BUG (test_reasons_never_echo_unbounded_input): a long `type` or `schema_version` is
    # echoed whole into the reason. Remove this assume once that is fixed.
    assume(field not in ("type", "schema_version") or len(repr(value)) < 1000)
    body = valid_register() if kind == "register_card" else valid_update_or_delete(kind, uuid4())
    if drop:
        body.pop(field, None)
    else:
        body[field] = value
    raw = to_json(body)
    out = decode_command(raw, max_bytes=LIMIT)
    check_decoded(out)
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:  # NaN, a lone surrogate, a huge int: not JSON at all
        assert isinstance(out, UndecodableCommand) and "not valid JSON" in out.error.message
        return
    if field in ("space", "name") and not drop and not obeys_name_rule(value):
        assert isinstance(out, UndecodableCommand), f"{field}={value!r} was accepted"
        assert field in out.error.message, out.error.message
    if field == "command_id" and isinstance(out, UndecodableCommand) and not drop:
        # a hostile command_id is never salvaged as something it is not
        assert out.command_id is None or str(out.command_id) == str(UUID(str(value)))


@FAST
@given(
    st.sampled_from(["space", "name"]),
    st.sampled_from(HOSTILE_STRINGS).filter(lambda s: not obeys_name_rule(s)),
)
def test_hostile_names_are_rejected_naming_the_field(field: str, value: str) -> None:
    body = valid_register(**{field: value})
    out = decode_command(orjson.dumps(body), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert out.error.code == "invalid_command"
    assert f"{field}:" in out.error.message and "invalid" in out.error.message
    assert out.command_id == UUID(body["command_id"])
    assert len(out.error.message) < MAX_REASON


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"type": "x" * 100_000}, id="long-type"),
        pytest.param({"type": {"k" * 100_000: None}}, id="type-object-with-long-key"),
        pytest.param({"k" * 100_000: 1}, id="long-unknown-field-name"),
        pytest.param({"schema_version": "x" * 100_000}, id="long-schema-version"),
    ],
)
def test_reasons_never_echo_unbounded_input(overrides: dict[str, Any]) -> None:
    body = valid_register()
    body.update(overrides)
    out = decode_command(orjson.dumps(body), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert len(out.error.message) < MAX_REASON, f"reason is {len(out.error.message)} characters"


@pytest.mark.parametrize(
    ("version", "shown"), [(2, "2"), (99, "99"), (-1, "-1"), ("1", "'1'"), (None, "None")]
)
def test_unknown_schema_versions_are_refused_by_name(version: object, shown: str) -> None:
    body = valid_register(schema_version=version)
    out = decode_command(orjson.dumps(body), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert out.error.code == "unsupported_schema_version"
    assert f"schema_version {shown} is not supported" in out.error.message
    assert out.command_id == UUID(body["command_id"])


@FAST
@given(st.integers(min_value=0, max_value=20_000), st.sampled_from(["description", "metadata"]))
def test_oversize_payloads_are_refused_with_the_id_salvaged(size: int, field: str) -> None:
    max_bytes = 4096
    blob = "x" * size
    body = valid_register(**{field: blob if field == "description" else {"blob": blob}})
    raw = orjson.dumps(body)
    out = decode_command(raw, max_bytes=max_bytes)
    check_decoded(out)
    if len(raw) > max_bytes:
        assert isinstance(out, UndecodableCommand)
        assert f"over the {max_bytes}-byte limit" in out.error.message
        # command_id is serialised near the front, so the rejection can still be answered
        assert out.command_id == UUID(body["command_id"])
    else:
        assert isinstance(out, RegisterCard)


# ---- handle ---------------------------------------------------------------------------------

VERSIONS = [
    "1.0.0",
    "1.1.0",
    "2.0.0-rc.1",
    "2.0.0",
    "1.2.3+build.1",
    "0.0.1",
    "3.0.0-alpha.beta.1",
    f"1.{MAX_PART - 1}.0",
    f"{MAX_PART - 1}.0.0",
]
states = st.frozensets(st.sampled_from(VERSIONS), max_size=5).map(NameState)


@st.composite
def records(draw: st.DrawFn, uid: UUID | None = None) -> CardRecord:
    card_type = draw(st.sampled_from(sorted(CARD_CLASSES)))
    registry = CARD_CLASSES[card_type].registry_type
    if draw(st.booleans()):  # sometimes the record is somewhere else, or lies about its registry
        registry = draw(st.sampled_from(list(RegistryType)))
    return CardRecord(
        uid=uid or draw(st.uuids()),
        registry=registry,
        space=draw(st.sampled_from(["demo", "other"])),
        name=draw(st.sampled_from(["churn", "x"])),
        version=draw(st.sampled_from(VERSIONS)),
        card_type=card_type,
        status=draw(st.sampled_from(["active", "deleted"])),
        created_at=NOW,
        command_id=draw(st.uuids()),
        attributes=draw(
            st.sampled_from([{}, {"parameters": {"lr": 0.1}}, {"metrics": "nope"}, {"x": 1}])
        ),
    )


@st.composite
def decodable_commands(draw: st.DrawFn) -> tuple[RegisterCard | UpdateCard | DeleteCard, dict]:
    """A command that decodes, with hostile-but-valid-typed content, and refs to decide with."""
    target = draw(st.uuids())
    refs = {r.uid: r for r in draw(st.lists(records(), max_size=3))}
    if draw(st.booleans()):
        rec = draw(records(uid=target))
        refs[rec.uid] = rec
    kind = draw(st.sampled_from(["register_card", "update_card", "delete_card"]))
    registry = draw(st.sampled_from([r.value for r in RegistryType] + ["experiment"]))
    lineage_uid = draw(st.sampled_from([*refs, uuid4()])) if refs else uuid4()
    attributes = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "parameters",
                    "metrics",
                    "datacard_uid",
                    "datacard_uids",
                    "modelcard_uids",
                    "runcard_uids",
                    "card_uids",
                    "framework",
                    "prompt",
                    "questionnaire",
                    "approved",
                    "space",
                    "version",
                    "uid",
                    "bogus",
                ]
            ),
            st.one_of(
                hostile_values,
                st.just(str(lineage_uid)),
                st.just([str(lineage_uid), "not-a-uuid"]),
                st.just([{"name": "loss", "value": 0.5, "step": 1}]),
            ),
            max_size=3,
        )
    )
    body: dict[str, Any] = {
        "type": kind,
        "schema_version": 1,
        "command_id": str(uuid4()),
        "issued_at": "2026-01-01T00:00:00Z",
        "registry": registry,
        "space": draw(st.sampled_from(["demo", "other"])),
        "name": draw(st.sampled_from(["churn", "x"])),
    }
    if kind == "register_card":
        body["card_type"] = draw(st.one_of(st.sampled_from(sorted(CARD_CLASSES)), hostile_text))
        body["version_type"] = draw(st.sampled_from(list(VersionType)))
        body["version"] = draw(
            st.one_of(
                st.none(),
                st.sampled_from(["1", "2.1", "1.0.0", "2.0.0-rc.5", f"{MAX_PART}", "x", "1.2.3.4"]),
                hostile_text,
            )
        )
        body["pre_tag"] = draw(st.sampled_from(["rc", "alpha", "", "a.b", "-", "x" * 32]))
        body["build_tag"] = draw(st.sampled_from(["build", "", "b+1", "x" * 32]))
        body["attributes"] = attributes
        body["metadata"] = draw(st.dictionaries(hostile_text, hostile_values, max_size=3))
    else:
        body["uid"] = str(target)
        if kind == "update_card":
            body["attributes"] = attributes
            body["add_metrics"] = draw(
                st.one_of(
                    st.none(),
                    st.lists(st.dictionaries(st.text(max_size=6), hostile_scalars), max_size=3),
                )
            )
    out = decode_command(to_json(body), max_bytes=LIMIT)
    assume(not isinstance(out, UndecodableCommand))
    assert not isinstance(out, UndecodableCommand)
    return out, refs


@FAST
@given(decodable_commands(), states)
def test_handle_never_raises_and_returns_one_clear_event(
    command_and_refs: tuple[RegisterCard | UpdateCard | DeleteCard, dict], state: NameState
) -> None:
    command, refs = command_and_refs
    events = handle(command, state, dict(refs), CTX)
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, CardRegistered | CardUpdated | CardDeleted | CommandRejected)
    assert event.command_id == command.command_id
    if isinstance(event, CommandRejected):
        assert event.error_code and event.error_code != "registry_error", event
        assert event.reason.strip(), event
    else:
        assert obeys_name_rule(event.card.space) and obeys_name_rule(event.card.name)
    if isinstance(event, CardRegistered):
        assert event.card.version not in state.versions, "a version was assigned twice"


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.sampled_from([f"{MAX_PART}.0.0", f"1.{MAX_PART}.0", f"1.0.{MAX_PART}"]),
    st.sampled_from(list(VersionType)),
)
def test_every_decided_version_fits_the_cards_table(taken: str, version_type: VersionType) -> None:
    body = valid_register(version_type=version_type.value)
    command = decode_command(orjson.dumps(body), max_bytes=LIMIT)
    assert isinstance(command, RegisterCard)
    (event,) = handle(command, NameState(frozenset({taken})), {}, CTX)
    if isinstance(event, CardRegistered):
        parts = event.card.version.split("+")[0].split("-")[0].split(".")
        assert all(int(p) <= MAX_PART for p in parts), (
            f"{version_type} after {taken} decided {event.card.version}, which the cards table"
            " (integer major/minor/patch) cannot store; it should be a CommandRejected"
        )
    else:
        assert isinstance(event, CommandRejected) and event.reason


# ---- card models ------------------------------------------------------------------------------


@FAST
@given(
    st.sampled_from(sorted(CARD_CLASSES)),
    st.sampled_from(["space", "name"]),
    st.one_of(st.sampled_from(HOSTILE_STRINGS + SURROGATES), st.text(max_size=70)).filter(
        lambda s: not obeys_name_rule(s)
    ),
)
def test_card_models_refuse_bad_names_with_a_value_error(
    card_type: str, field: str, bad: str
) -> None:
    cls = CARD_CLASSES[card_type]
    kwargs = {"space": "demo", "name": "churn", field: bad}
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


@FAST
@given(st.sampled_from(sorted(CARD_CLASSES)), valid_names, valid_names)
def test_card_models_accept_every_good_name(card_type: str, space: str, name: str) -> None:
    card = CARD_CLASSES[card_type](space=space, name=name)
    assert (card.space, card.name) == (space, name)


@FAST
@given(st.sampled_from(sorted(CARD_CLASSES)), hostile_values)
def test_card_models_refuse_non_string_names(card_type: str, bad: Any) -> None:
    if obeys_name_rule(bad):
        return
    with pytest.raises(ValueError):
        CARD_CLASSES[card_type](space=bad, name="churn")


# ---- versioning -------------------------------------------------------------------------------

version_ish = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789.*xX^~<>=!, -+vrcalph\t", max_size=40),
    st.sampled_from(
        [
            f"{MAX_PART}.*",
            f"^{MAX_PART}",
            f"~{MAX_PART}.{MAX_PART}",
            f"{MAX_PART + 1}",
            "9" * 400,
            "1.2.3-",
            "1..2",
            "^",
            "~",
            ">=",
            ",",
            "1.2.3,,<",
            "0.0.0-0",
            "1.2.3-01",
            "1.2.3+",
            "=v1",
            "==1.*",
            "\x00",
            "1.2.3\x00",
        ]
    ),
)


@settings(max_examples=400, deadline=None, database=None)
@given(version_ish)
def test_parse_constraint_only_raises_registry_errors(spec: str) -> None:
    try:
        constraint = parse_constraint(spec)
    except RegistryError as exc:
        assert exc.message.strip()
        return
    # a parsed constraint can be evaluated against real versions without blowing up
    for version in ("1.0.0", "1.2.3-rc.1", f"{MAX_PART}.{MAX_PART}.{MAX_PART}"):
        constraint.matches(version)


@settings(max_examples=400, deadline=None, database=None)
@given(
    st.frozensets(st.sampled_from(VERSIONS), max_size=4),
    st.sampled_from(list(VersionType)),
    st.one_of(st.none(), version_ish),
    st.one_of(st.just("rc"), version_ish),
    st.one_of(st.just("build"), version_ish),
)
def test_next_version_only_raises_registry_errors(
    existing: frozenset[str],
    version_type: VersionType,
    explicit: str | None,
    pre_tag: str,
    build_tag: str,
) -> None:
    try:
        out = next_version(existing, version_type, explicit, pre_tag=pre_tag, build_tag=build_tag)
    except RegistryError as exc:
        assert exc.message.strip()
        return
    assert out not in existing, f"{out} was already taken"


# ---- full ranges: every command type, keys as well as values (issue 19) -----------------------

# cards already registered, to update and delete (one of each kind that has metrics or not)
TARGETS: list[dict[str, Any]] = [
    {"uid": uuid4(), "registry": "run", "space": "gen", "name": "a", "card_type": "RunCard"},
    {"uid": uuid4(), "registry": "data", "space": "gen", "name": "b", "card_type": "DataCard"},
    {"uid": uuid4(), "registry": "audit", "space": "gen", "name": "c", "card_type": "AuditCard"},
]
TARGET_RECORDS = {
    t["uid"]: CardRecord(
        uid=t["uid"],
        registry=t["registry"],
        space=t["space"],
        name=t["name"],
        version="1.0.0",
        card_type=t["card_type"],
        created_at=NOW,
        command_id=uuid4(),
    )
    for t in TARGETS
}


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_commands(TARGETS))
def test_whatever_is_accepted_fits_the_store_and_the_rest_is_refused(body: dict[str, Any]) -> None:
    """From decode to the projection's rows: a command is refused, or every event it yields
    encodes, decodes back the same, and holds only what the store can (restated in
    tests/support/wire.py); a command holding what the store cannot is never accepted."""
    body = {**body, "command_id": str(uuid4())}
    raw = to_json(body)  # lone surrogates escaped, NaN and huge ints written out
    out = decode_command(raw, max_bytes=LIMIT)
    check_decoded(out)
    if isinstance(out, UndecodableCommand):
        assert unstorable(out.error.message) is None
        return
    (event,) = handle(out, NameState(), dict(TARGET_RECORDS), CTX)
    payload = encode(event)
    stored = orjson.loads(payload)
    assert unstorable(stored) is None, unstorable(stored)
    assert decode_event(payload) == event
    why = must_be_refused(body)
    if isinstance(event, CommandRejected):
        return
    assert why is None, f"accepted although {why}: {str(body)[:400]}"
    card = event.card  # type: ignore[union-attr]
    if isinstance(event, CardRegistered):
        json_rows([card_row(event, 1)])
    for row in metric_rows(card):
        step, value, logged_at = row[3], row[4], row[5]
        assert step is None or (isinstance(step, int) and 0 <= step <= 2**31 - 1)
        assert isinstance(value, float) and unstorable(value) is None
        assert logged_at is None or (isinstance(logged_at, datetime) and utc_in_calendar(logged_at))
    for ref in card.artifacts:
        assert 0 <= ref.size <= 2**63 - 1
