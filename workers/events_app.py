"""The public event contract as a FastStream app: one publisher declaration per event type on
`opsml.events`, whose message schema is the pydantic event model the sequencer publishes.

It runs nothing: the sequencer publishes with aiokafka (see docs/architecture.md for why). It
exists so the AsyncAPI document is *generated from the models*, never written by hand:

    python -m workers.events_app                 # writes docs/asyncapi.json
    python -m workers.events_app --check         # fails if docs/asyncapi.json is stale
    faststream docs serve workers.events_app:app # browse it
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

import registry_core
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    EventBase,
    SequencerStarted,
)
from registry_core.settings import Settings

EVENTS_TOPIC = str(Settings.model_fields["events_topic"].default)  # (the default; see /config)
DOC = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"

EVENT_DOCS: dict[type[EventBase], str] = {
    CardRegistered: "A new card version: `card` is its full record (uid, version, tags, ...).",
    CardUpdated: "A card's mutable fields changed; `card` is the full record after the change,"
    " `changed` names the fields.",
    CardDeleted: "A card was deleted (a tombstone; the version stays taken); `card` is its record"
    " with status `deleted`.",
    CommandRejected: "A command was refused; `error_code` and `reason` say why. No card.",
    AliasSet: "An alias (`prod`) of registry/space/name now points at `version` (card `uid`);"
    " `previous_version`/`previous_uid` say where it pointed before (null: a new alias), `actor`"
    " who moved it.",
    AliasRemoved: "An alias of registry/space/name was removed; `version`/`uid` is where it"
    " pointed, `actor` who removed it.",
    SequencerStarted: "Internal epoch marker: a sequencer took over with a new `epoch`. Events"
    " of a lower epoch after it are fenced and must be ignored. Subscribers skip it by default.",
}

COMMON = (
    "Every event carries `event_id` (unique; idempotency key), `command_id` (the command that"
    " caused it), `occurred_at`, `schema_version`, `epoch` (fencing token) and `command_offset`."
    " One partition; the Kafka offset is the global order. Key: `registry/space/name` where the"
    " event has one."
)

broker = KafkaBroker(
    "localhost:9092",
    description="The registry's Kafka (clients learn the address from GET /api/v1/config).",
)
publishers = {
    cls: broker.publisher(
        EVENTS_TOPIC,
        title=f"{EVENTS_TOPIC}:{cls.__name__}",
        schema=cls,
        description=f"{EVENT_DOCS[cls]} {COMMON}",
    )
    for cls in EVENT_DOCS
}

app = FastStream(
    broker,
    specification=AsyncAPI(
        broker,
        title="opsml-registry events",
        version=registry_core.__version__,
        description=inspect.cleandoc(
            """
            The event log of opsml-registry (`opsml.events`): the source of truth that the read
            API projects and downstream services subscribe to (`client.subscribe`). Events are
            immutable; a changed shape gets a new `schema_version` and an upcaster, so old events
            keep loading. See docs/events.md.
            """
        ),
        schema_version="3.0.0",
    ),
)


def render() -> str:
    # sorted: FastStream orders channels differently from run to run; the file must be stable
    return json.dumps(app.schema.to_specification().to_jsonable(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the AsyncAPI document of the events.")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale: run python -m workers.events_app", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
