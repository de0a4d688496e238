"""The client's long-poll (`GET /api/v1/commands/<uuid>?wait=<s>`) is answered by the API's
fast-path layer without FastAPI's routing (workers/api/fast_outcome.py `fast_outcome_args`);
every other form goes to the route. Both must answer the same bytes."""

from __future__ import annotations

import uuid

import httpx
import pytest

from client import AsyncCardRegistry, RunCard
from tests.conftest import Stack
from workers.api.fast_outcome import fast_outcome_args

pytestmark = pytest.mark.integration


def scope(path: str, query: bytes = b"", method: str = "GET") -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": query}


def test_only_the_clients_exact_form_takes_the_fast_path() -> None:
    cid = uuid.uuid4()
    p = f"/api/v1/commands/{cid}"
    assert fast_outcome_args(scope(p)) == (cid, 0.0)
    assert fast_outcome_args(scope(p, b"wait=30.0")) == (cid, 30.0)
    assert fast_outcome_args(scope(p, b"wait=0.125")) == (cid, 0.125)
    for other in (
        scope(p, b"wait=61"),
        scope(p, b"wait=1e3"),
        scope(p, b"wait=-1"),
        scope(p, b"wait=nan"),
        scope(p, b"wait=1&wait=2"),
        scope(p, b"other=1"),
        scope(p.upper()),
        scope(f"/api/v1/commands/{cid.hex}"),
        scope(p + "/"),
        scope(p, method="POST"),
        scope("/api/v1/commands/outcomes", method="GET"),
    ):
        assert fast_outcome_args(other) is None, other


async def test_fast_path_and_route_answer_the_same_bytes(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as runs:
        (done,) = await runs.register_cards([RunCard(space="fast", name="same")])
    assert done.status == "registered"
    cid = str(done.command_id)
    unknown = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=stack.url) as http:
        for a, b in (
            (f"/api/v1/commands/{cid}?wait=1", f"/api/v1/commands/{cid.upper()}?wait=1"),
            (f"/api/v1/commands/{cid}", f"/api/v1/commands/{cid}?wait=0&x=1"),
            (f"/api/v1/commands/{unknown}?wait=0.2", f"/api/v1/commands/{unknown}?wait=0.2&x=1"),
        ):
            fast, route = await http.get(a), await http.get(b)
            assert fast.status_code == route.status_code
            assert fast.content == route.content
            assert fast.headers["content-type"] == route.headers["content-type"]
            assert fast.headers["content-length"] == route.headers["content-length"]
    assert fast.status_code == 202 and fast.json()["status"] == "pending"
