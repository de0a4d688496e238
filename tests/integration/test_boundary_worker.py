"""Poison commands at the boundary (issue 19), against a real worker, broker and Postgres: a value
the wire schemas accept is one the projection can store, so each of these is refused - by the
client before it publishes, or by the worker as a `CommandRejected` naming the field - and the
worker keeps registering.

The generated part draws commands of every type (a registration of each card type, an update, a
metrics append, a delete) over the full ranges (tests/support/wire.py: keys as well as values,
64-bit and larger integers, the whole calendar with offsets, NUL, lone surrogates), a fresh
seed each run (OPSML_BOUNDARY_SEED replays one), and publishes them raw."""

from __future__ import annotations

import json
import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from client import AsyncCardRegistry, RunCard
from registry_core.domain.cards import Metric
from registry_core.domain.errors import InvalidCommand
from tests.conftest import Stack
from tests.integration.helpers import COMMANDS, fetch, outcome, publish_raw, read_topic
from tests.support.wire import command, hostile_commands, must_be_refused

pytestmark = pytest.mark.integration

PLUS_ONE = timezone(timedelta(hours=1))
MINUS_ONE = timezone(timedelta(hours=-1))
YEAR_0_IN_UTC = datetime(1, 1, 1, tzinfo=PLUS_ONE)
YEAR_10000_IN_UTC = datetime(9999, 12, 31, 23, 59, 59, tzinfo=MINUS_ONE)


def spaced(body: dict[str, Any]) -> bytes:
    """What a Python client using json.dumps sends: a space after every colon."""
    return json.dumps(body).encode()


def nest(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


async def outcomes(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        resp = await http.post("/api/v1/commands/outcomes", json={"command_ids": ids})
    assert resp.status_code == 200, resp.text
    return {o["command_id"]: o for o in resp.json()["outcomes"]}


async def still_registers(stack: Stack) -> None:
    assert stack.workers[0].poll() is None, f"the worker died:\n{stack.worker_log()[-3000:]}"
    nxt = command(space="after", name="poison")
    await publish_raw(stack.bootstrap, spaced(nxt))
    got = (await outcome(stack.url, nxt["command_id"], wait=20)).json()
    assert got["status"] == "registered", got
    assert stack.workers[0].poll() is None


# ---- the client ------------------------------------------------------------------------------


async def test_the_client_refuses_unstorable_values_before_publishing(stack: Stack) -> None:
    # on construction, naming the field
    with pytest.raises(ValueError, match=r"(?s)tags.*NUL"):
        RunCard(space="demo", name="nul", tags={"a\x00b": "v"})
    with pytest.raises(ValueError, match=r"(?s)timestamp.*UTC"):
        Metric(name="loss", value=1.0, timestamp=YEAR_0_IN_UTC)

    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        # changed in place after the card checked it: refused at register time
        card = RunCard(space="demo", name="nul", tags={"ok": "v"})
        card.tags["a\x00b"] = "v"
        with pytest.raises(InvalidCommand, match=r"(?s)tags.*NUL"):
            await reg.register_card(card)
        card = RunCard(space="demo", name="deep", metadata={"d": [0]})
        card.metadata["d"] = nest(300)
        with pytest.raises(InvalidCommand, match=r"(?s)metadata.*nested"):
            await reg.register_card(card)
        assert await read_topic(stack.bootstrap, COMMANDS) == [], "something was published"

        run = await reg.register_card(RunCard(space="demo", name="metrics"))
        for when in (YEAR_0_IN_UTC, YEAR_10000_IN_UTC):
            bad = Metric.model_construct(name="loss", value=1.0, step=1, timestamp=when)
            with pytest.raises(InvalidCommand, match=r"(?s)timestamp.*UTC"):
                await reg.log_metrics(run, [bad])
        assert len(await read_topic(stack.bootstrap, COMMANDS)) == 1  # the registration only
        edge = datetime(1, 1, 1, 1, tzinfo=PLUS_ONE)  # 0001-01-01T00:00Z: the first instant
        updated = await reg.log_metrics(run, [Metric(name="loss", value=1.0, timestamp=edge)])
        assert updated.metrics[0].timestamp == edge  # type: ignore[attr-defined]
    await still_registers(stack)


# ---- raw commands: the table and neighbours ------------------------------------------


async def test_raw_poison_commands_are_rejected_naming_the_field(
    stack: Stack, tmp_path: Path
) -> None:
    # content already stored in the space, to reference with a size no bigint holds
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(30_000))
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        card = RunCard(space="demo", name="stored")
        card.add_artifact(blob)
        stored = await reg.register_card(card)
        run = await reg.register_card(RunCard(space="demo", name="target"))
    sha = stored.artifacts[0].sha256

    def update(**fields: Any) -> dict[str, Any]:
        body = command(type="update_card", uid=str(run.uid), space="demo", name="target")
        del body["card_type"]
        return {**body, **fields}

    def metric(when: datetime) -> dict[str, Any]:
        return {"name": "loss", "value": 1.0, "step": 1, "timestamp": when.isoformat()}

    cases: dict[str, tuple[dict[str, Any], list[str]]] = {
        "nul-in-tag-key": (command(tags={"a\x00b": "v"}), ["tags", "NUL"]),
        "nul-in-metadata-key": (command(metadata={"k\x00": 1}), ["metadata", "NUL"]),
        "nul-in-nested-metadata-key": (
            command(metadata={"o": [{"i\x00": 1}]}),
            ["metadata.o[0]", "NUL"],
        ),
        "nul-in-parameters-key": (
            command(attributes={"parameters": {"lr\x00": 0.1}}),
            ["attributes.parameters", "NUL"],
        ),
        "nul-in-update-metadata-key": (update(metadata={"\x00": 1}), ["metadata", "NUL"]),
        "stored-content-declared-2^63-bytes": (
            command(artifacts=[{"path": "blob.bin", "sha256": sha, "size": 2**63}]),
            ["artifacts[0].size"],
        ),
        "int-beyond-2^64-in-attributes": (
            command(attributes={"parameters": {"n": 2**70}}),
            ["attributes.parameters.n"],
        ),
        "metric-at-year-0-in-utc": (
            command(attributes={"metrics": [metric(YEAR_0_IN_UTC)]}),
            ["metrics", "timestamp"],
        ),
        "metric-at-year-10000-in-utc": (
            command(attributes={"metrics": [metric(YEAR_10000_IN_UTC)]}),
            ["metrics", "timestamp"],
        ),
        "add-metric-at-year-0-in-utc": (
            update(add_metrics=[metric(YEAR_0_IN_UTC)]),
            ["metrics", "timestamp"],
        ),
        "add-metric-at-year-10000-in-utc": (
            update(add_metrics=[metric(YEAR_10000_IN_UTC)]),
            ["metrics", "timestamp"],
        ),
        "issued-at-year-0-in-utc": (
            command(issued_at="0001-01-01T00:00:00+01:00"),
            ["issued_at"],
        ),
        "metadata-deeper-than-the-encoders": (
            command(metadata={"d": nest(300)}),
            ["metadata.d", "nested"],
        ),
        # json.dumps writes an escaped lone surrogate, which no strict decoder takes: still
        # answered, on the sender's own command id
        "lone-surrogate-in-a-key": (command(metadata={"\ud800": 1}), ["not valid JSON"]),
        "nan-in-metadata": (command(metadata={"x": float("nan")}), ["not valid JSON"]),
    }
    await publish_raw(stack.bootstrap, *(spaced(body) for body, _ in cases.values()))
    last = command(space="demo", name="last")
    await publish_raw(stack.bootstrap, spaced(last))
    assert (await outcome(stack.url, last["command_id"], wait=20)).json()["status"] == "registered"

    got = await outcomes(stack, [body["command_id"] for body, _ in cases.values()])
    problems = []
    for case, (body, words) in cases.items():
        answer = got.get(body["command_id"])
        if answer is None or answer["status"] != "rejected":
            problems.append(f"{case}: {answer}")
            continue
        reason = answer["reason"] or ""
        missing = [w for w in words if w not in reason]
        if answer["error_code"] != "invalid_command" or missing:
            problems.append(f"{case}: {answer['error_code']} {reason!r} lacks {missing}")
    assert not problems, "\n".join(problems)
    await still_registers(stack)


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda b: json.dumps(b).encode(), id="json.dumps-spacing"),
        pytest.param(lambda b: json.dumps(b, indent=1).encode(), id="indented"),
    ],
)
async def test_an_oversize_command_with_spaced_json_is_answered(stack: Stack, render: Any) -> None:
    body = command(space="big", name="card", description="x" * 1_100_000)
    await publish_raw(stack.bootstrap, render(body))
    resp = await outcome(stack.url, body["command_id"], wait=20)
    assert resp.status_code == 200, f"no outcome: {resp.text}"
    got = resp.json()
    assert got["status"] == "rejected" and "limit" in got["reason"], got
    (row,) = await fetch(
        stack.database_url,
        "SELECT space, name FROM command_outcomes WHERE command_id = $1",
        UUID(body["command_id"]),
    )
    assert (row["space"], row["name"]) == ("big", "card")  # answered on its own key
    await still_registers(stack)


# ---- generated: every command type over the full ranges --------------------------------------

EXAMPLES = 300


def generate(
    n: int, run_seed: int, targets: list[dict[str, Any]], doomed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    @seed(run_seed)
    @settings(
        max_examples=n,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_commands(targets, doomed))
    def collect(body: dict[str, Any]) -> None:
        out.append({**body, "command_id": str(uuid4())})

    collect()
    return out


async def test_generated_commands_of_every_type_are_stored_or_rejected(stack: Stack) -> None:
    run_seed = int(os.environ.get("OPSML_BOUNDARY_SEED", random.randrange(2**32)))
    replay = f"(replay with OPSML_BOUNDARY_SEED={run_seed})"
    baseline = [
        command(registry=registry, space="gen", name=name, card_type=card_type)
        for registry, card_type in (
            ("run", "RunCard"),
            ("data", "DataCard"),
            ("audit", "AuditCard"),
        )
        for name in ("a", "b", "c")
    ]
    await publish_raw(stack.bootstrap, *(spaced(b) for b in baseline))
    targets = []
    for body in baseline:
        got = (await outcome(stack.url, body["command_id"])).json()
        assert got["status"] == "registered", got
        targets.append({**{k: body[k] for k in ("registry", "space", "name", "card_type")},
                        "uid": got["uid"]})  # fmt: skip

    # updates go to the first card of each kind, deletes to the others
    examples = generate(
        EXAMPLES, run_seed, targets[::3], [t for t in targets if t not in targets[::3]]
    )
    assert len(examples) >= EXAMPLES // 2, "hypothesis generated too few"
    # json.dumps: lone surrogates escaped, NaN and huge integers written out, as a careless
    # client would send them
    await publish_raw(stack.bootstrap, *(spaced(b) for b in examples))
    last = command(space="gen", name="last")
    await publish_raw(stack.bootstrap, spaced(last))
    resp = await outcome(stack.url, last["command_id"], wait=40)
    assert stack.workers[0].poll() is None, (
        f"the worker died {replay}:\n{stack.worker_log()[-3000:]}"
    )
    assert resp.json()["status"] == "registered", f"{resp.text} {replay}"

    got = await outcomes(stack, [b["command_id"] for b in examples])
    problems = []
    for body in examples:
        answer = got.get(body["command_id"])
        if answer is None:
            problems.append(f"no outcome for {str(body)[:300]}")
            continue
        why = must_be_refused(body)
        if why is not None and answer["status"] != "rejected":
            problems.append(f"{answer['status']} although {why}: {str(body)[:300]}")
        if answer["status"] == "rejected" and not (answer["reason"] or "").strip():
            problems.append(f"a rejection without a reason: {str(body)[:300]}")
    assert not problems, f"{len(problems)} problems {replay}:\n" + "\n".join(problems[:15])
    statuses = {a["status"] for a in got.values()}
    print(
        "STATUSES",
        __import__("collections").Counter(a["status"] for a in got.values()),
        len(examples),
    )
    assert "rejected" in statuses and statuses - {"rejected"}, f"{statuses} {replay}"
    await still_registers(stack)
