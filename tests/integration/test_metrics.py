"""Prometheus metrics and JSON logs of a running worker and API (issue 16): both `/metrics`
endpoints are scraped before and after registrations and the counters must have moved by what
was done; in JSON mode every line either process wrote is one JSON object, and a request's id,
echoed in `X-Request-ID`, is in its log lines with the command's id."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client import AsyncCardRegistry, RunCard
from registry_core.domain.errors import VersionConflict
from tests.conftest import Stack, running
from tests.integration.helpers import fetch
from workers import procs

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as http:
        resp = await http.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def test_both_endpoints_count_registrations_and_every_log_line_is_json(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    (health_port,) = procs.free_ports(1)
    stack = Stack(
        database_url, kafka, tmp_path,
        extra_env={"OPSML_LOG_FORMAT": "json", "OPSML_WORKER_HEALTH_PORT": str(health_port),
                   "OPSML_WORKER_HEALTH_HOST": "127.0.0.1"},
    )  # fmt: skip
    worker_metrics = f"http://127.0.0.1:{health_port}/metrics"
    async with running(stack):
        w0, a0 = await scrape(worker_metrics), await scrape(f"{stack.url}/metrics")
        assert value(w0, "opsml_sequencer_active") == 1
        assert value(w0, "opsml_sequencer_standby") == 0

        report = tmp_path / "report.txt"
        report.write_bytes(b"x" * 4096)
        async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
            for i in range(4):
                await reg.register_card(RunCard(space="m", name="churn", tags={"i": str(i)}))
            with_file = RunCard(space="m", name="files")
            with_file.log_artifact(report)
            card = await reg.register_card(with_file)
            with pytest.raises(VersionConflict):  # 1.0.0 is taken: a rejection
                await reg.register_card(RunCard(space="m", name="churn", version="1.0.0"))
        (row,) = await fetch(
            database_url, "SELECT command_id FROM command_outcomes WHERE uid = $1", card.uid
        )
        command_id = str(row["command_id"])
        rid = f"test-{uuid.uuid4().hex}"
        async with httpx.AsyncClient(base_url=stack.url) as http:
            got = await http.get(
                f"/api/v1/cards/{card.uid}/artifacts/report.txt", headers={"X-Request-ID": rid}
            )
            assert got.status_code == 200 and len(got.content) == 4096
            assert got.headers["x-request-id"] == rid  # echoed
            minted = (await http.get("/api/v1/config")).headers["x-request-id"]
            assert minted and minted != rid  # made when the caller sends none
            poll = await http.get(f"/api/v1/commands/{command_id}?wait=1")
            poll_rid = poll.headers["x-request-id"]  # the fast path echoes it too

        w1, a1 = await scrape(worker_metrics), await scrape(f"{stack.url}/metrics")
        registered = "opsml_commands_total"
        assert (
            value(w1, registered, outcome="registered", registry="run", reason="")
            - value(w0, registered, outcome="registered", registry="run", reason="")
            == 5
        )
        assert (
            value(w1, registered, outcome="rejected", registry="run", reason="version_conflict")
            - value(w0, registered, outcome="rejected", registry="run", reason="version_conflict")
            == 1
        )
        assert total(w1, "opsml_batch_size_count") > total(w0, "opsml_batch_size_count")
        assert total(w1, "opsml_batch_size_sum") - total(w0, "opsml_batch_size_sum") == 6
        for phase in ("decide", "artifacts", "publish", "project"):
            assert total(w1, "opsml_batch_phase_seconds_count", phase=phase) > total(
                w0, "opsml_batch_phase_seconds_count", phase=phase
            ), phase
        latency = "opsml_registration_latency_seconds_count"
        assert total(w1, latency) - total(w0, latency) == 5
        assert value(w1, "opsml_commands_lag") == 0  # all read
        assert value(w1, "opsml_projection_lag") == 0  # all projected
        assert time.time() - value(w1, "opsml_sequencer_loop_timestamp_seconds") < 30  # going

        route = "/api/v1/commands/{command_id}"
        polls = total(a1, "opsml_http_requests_total", route=route, method="GET", status="200")
        assert polls - total(a0, "opsml_http_requests_total", route=route, status="200") >= 6
        hist = "opsml_http_request_duration_seconds_count"
        assert total(a1, hist, route=route) - total(a0, hist, route=route) >= 6
        staged = value(a1, "opsml_artifact_bytes_total", direction="in") - value(
            a0, "opsml_artifact_bytes_total", direction="in"
        )
        assert staged == 4096
        assert value(a1, "opsml_artifact_bytes_total", direction="out") >= 4096
        assert value(a1, "opsml_open_long_polls") == 0  # all answered
        assert "opsml_open_long_polls" in {n for n, _ in a0}

    # every line of both processes is one JSON object (uvicorn's own lines included)
    lines = {
        name: [ln for ln in (tmp_path / name).read_text().splitlines() if ln.strip()]
        for name in ("api.log", "worker0.log")
    }
    parsed = {name: [json.loads(ln) for ln in ls] for name, ls in lines.items()}
    api_lines = parsed["api.log"]
    assert any(r.get("logger") == "uvicorn.error" for r in api_lines)  # "Uvicorn running on"
    access = [r for r in api_lines if r.get("logger") == "uvicorn.access"]
    assert any(r["request_id"] == rid and r["status"] == 200 for r in access)
    poll_line = next(r for r in access if r["request_id"] == poll_rid)
    assert poll_line["command_id"] == command_id
    decided = [r for r in parsed["worker0.log"] if r.get("command_id") == command_id]
    assert decided, "the worker's lines about the command carry its command_id"


def test_a_batch_observed_at_once_equals_each_value_observed() -> None:
    """`observe_many` (the sequencer's per-batch latency update) writes what one `observe` per
    value writes - bucket counts, sum and count - including values on and past the bounds."""
    from prometheus_client import CollectorRegistry, Histogram

    from registry_core.metrics import observe_many, render

    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 1.0, 7.5, 61.0, 1e6, 0.005]
    rendered = []
    for batch in (False, True):
        registry = CollectorRegistry()
        hist = Histogram("h", "h", buckets=(0.005, 0.01, 0.5, 1, 10, 60), registry=registry)
        if batch:
            observe_many(hist, values)
        else:
            for v in values:
                hist.observe(v)
        rendered.append(render(registry))
    assert rendered[0] == rendered[1]
    assert b'h_bucket{le="0.005"} 4.0' in rendered[1] and b"h_count 10.0" in rendered[1]
