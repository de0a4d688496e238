"""Prometheus metrics of the API and the worker, defined once (docs/operations.md has the table).

Each process serves its own registry (`API` or `WORKER`) at `/metrics`, so a test process that
runs both still scrapes two distinct sets. The hot paths count in bulk: the sequencer adds a
batch's outcomes with one `inc(n)` per label set (`count_outcomes`), and the API's request layer
does one counter and one histogram update per request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from uuid import UUID

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from registry_core.domain.events import (
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # no `_created` series: half the lines, nothing an alert reads

# ---- the worker ----------------------------------------------------------------------------------

WORKER = CollectorRegistry(auto_describe=True)

COMMANDS = Counter(
    "opsml_commands",
    "Commands decided by the sequencer, by outcome, registry and rejection reason (error code).",
    ["outcome", "registry", "reason"],
    registry=WORKER,
)
DUPLICATES = Counter(
    "opsml_commands_duplicate",
    "Redelivered commands answered with their first outcome (not decided again).",
    registry=WORKER,
)
BATCH_SIZE = Histogram(
    "opsml_batch_size",
    "Commands per sequencer batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
    registry=WORKER,
)
PHASE = Histogram(
    "opsml_batch_phase_seconds",
    "Time of each phase of a sequencer batch: decide, artifacts, publish, project.",
    ["phase"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=WORKER,
)
# the children, looked up once (a `labels()` call takes a lock and builds a key every time)
DECIDE, ARTIFACTS, PUBLISH, PROJECT = (
    PHASE.labels(p) for p in ("decide", "artifacts", "publish", "project")
)
REGISTRATION_LATENCY = Histogram(
    "opsml_registration_latency_seconds",
    "From a RegisterCard command's issued_at (the client's clock) to its projection's commit.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=WORKER,
)
COMMANDS_LAG = Gauge(
    "opsml_commands_lag",
    "Commands in the log not yet read by the sequencer (log end minus its position).",
    registry=WORKER,
)
LOOP_AT = Gauge(
    "opsml_sequencer_loop_timestamp_seconds",
    "When the active sequencer's batch loop last went round (unix time; at least every 0.5 s"
    " while idle): a stuck sequencer stops moving it.",
    registry=WORKER,
)
PROJECTION_LAG = Gauge(
    "opsml_projection_lag",
    "Events published to the log and not yet projected into Postgres.",
    registry=WORKER,
)
ACTIVE = Gauge(
    "opsml_sequencer_active",
    "1 while this worker is the active sequencer (lock held, caught up), else 0.",
    registry=WORKER,
)
STANDBY = Gauge(
    "opsml_sequencer_standby",
    "1 while this worker waits on the sequencer lock as a hot standby, else 0.",
    registry=WORKER,
)
RESTARTS = Counter(
    "opsml_sequencer_restarts",
    "Sequencer restarts after a lost Postgres or Kafka connection.",
    registry=WORKER,
)

# ---- the API -------------------------------------------------------------------------------------

API = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "opsml_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=API,
)
HTTP_LATENCY = Histogram(
    "opsml_http_request_duration_seconds",
    "HTTP request time, from the first byte read to the last written, by route and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=API,
)
ARTIFACT_BYTES = Counter(
    "opsml_artifact_bytes",
    "Artifact bytes through the API: in = staged uploads, out = downloads.",
    ["direction"],
    registry=API,
)
OPEN_LONG_POLLS = Gauge(
    "opsml_open_long_polls",
    "Outcome long-polls (GET /api/v1/commands/{id}?wait=...) waiting right now.",
    registry=API,
)


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format of one registry."""
    return generate_latest(registry)


# ---- counting a batch ----------------------------------------------------------------------------


_OUTCOMES = {CardRegistered: "registered", CardUpdated: "updated", CardDeleted: "deleted"}


def _label(event: Event) -> tuple[str, str, str] | None:
    outcome = _OUTCOMES.get(type(event))
    if outcome is not None:
        return (outcome, event.card.registry.value, "")  # type: ignore[union-attr,attr-defined]
    if isinstance(event, CommandRejected):
        registry = event.registry.value if event.registry is not None else "unknown"
        return ("rejected", registry, event.error_code)
    return None


def count_outcomes(events: Iterable[Event], set_aside: Collection[UUID] = ()) -> None:
    """Add one batch's decisions: one `inc` per (outcome, registry, reason), not per command.
    A decision the tables refused (its command id in `set_aside`) was answered with a rejection
    instead, counted here as `rejected` with the reason `unstorable`."""
    tally: Tally[tuple[str, str, str]] = Tally()
    for event in events:
        label = _label(event)
        if label is None:
            continue
        if set_aside and event.command_id in set_aside and label[0] != "rejected":
            label = ("rejected", label[1], "unstorable")
        tally[label] += 1
    for (outcome, registry, reason), n in tally.items():
        COMMANDS.labels(outcome, registry, reason).inc(n)


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """`histogram.observe(v)` for every value, as one update per bucket: a batch's latencies
    are sorted into buckets here (bisect) and each touched bucket is incremented once, instead
    of a locked update per command. Uses the client's bucket attributes (stable since 0.4);
    should they change, it falls back to `observe`, which gives the same result."""
    amounts = list(values)
    if not amounts:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = Tally(bisect_left(bounds, amount) for amount in amounts)
    for i, n in counts.items():
        buckets[i].inc(n)
    total.inc(sum(amounts))


def observe_registrations(issued: Iterable[datetime]) -> None:
    """End-to-end latency of the registrations just committed, by their commands' issued_at."""
    now = datetime.now(UTC)
    observe_many(REGISTRATION_LATENCY, (max(0.0, (now - at).total_seconds()) for at in issued))


def set_role(*, active: bool, standby: bool) -> None:
    ACTIVE.set(1 if active else 0)
    STANDBY.set(1 if standby else 0)
