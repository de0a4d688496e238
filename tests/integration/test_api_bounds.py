"""Values at and past the bounds of what the read API's stores hold (issue 19): datetimes at the
calendar's ends with an offset, integers of thousands of digits, NUL and lone surrogates in JSON
bodies, odd `Range` headers. Each was (or is a neighbour of) a 500; each must be a 4xx with a
JSON `detail`, the API must stay healthy, and the valid neighbours keep their answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from client import AsyncCardRegistry, RunCard
from tests.conftest import Stack, running
from tests.integration.test_hostile_api import _healthy, _problem

pytestmark = pytest.mark.integration

BIG = "9" * 5000  # past Python's int() digit limit (4300): int(BIG) raises ValueError


def _time_cursor(stamp: str, offset: int = 0) -> str:
    return base64.urlsafe_b64encode(json.dumps(["t", [stamp, offset]]).encode()).decode()


# (label, query parameters of GET /api/v1/cards, the parameter the detail must name or "")
CARDS_QUERIES: list[tuple[str, dict[str, Any], str]] = [
    ("max_date at year 1 +14:00", {"max_date": "0001-01-01T00:00:00+14:00"}, "max_date"),
    ("max_date at year 9999 -14:00", {"max_date": "9999-12-31T23:59:59-14:00"}, "max_date"),
    ("max_date at year 1 +00:01", {"max_date": "0001-01-01T00:00:00+00:01"}, "max_date"),
    ("max_date at year 9999 -00:01", {"max_date": "9999-12-31T23:59:00-00:01"}, "max_date"),
    ("max_date at year 1 +23:59", {"max_date": "0001-01-01T23:58:59+23:59"}, "max_date"),
    ("max_date 9999 +23:59:59.999999", {"max_date": "9999-12-31T23:59:59.999999-23:59"}, ""),
    ("max_date as a huge unix time", {"max_date": "9" * 20}, "max_date"),
    ("max_date as 5000 digits", {"max_date": BIG}, "max_date"),
    ("max_date as a negative unix time", {"max_date": "-" + "9" * 20}, "max_date"),
    ("max_date year 10000", {"max_date": "10000-01-01T00:00:00Z"}, "max_date"),
    ("max_date year 0", {"max_date": "0000-01-01T00:00:00Z"}, "max_date"),
    ("limit of 5000 digits", {"limit": BIG}, "limit"),
    ("limit of -5000 digits", {"limit": "-" + BIG}, "limit"),
    ("limit over int64", {"limit": str(2**63)}, "limit"),
    ("limit as a float", {"limit": "1e3"}, "limit"),
    ("version of 5000 digits", {"version": BIG}, ""),
    ("version line of 5000 digits", {"version": BIG + ".*"}, ""),
    ("caret of 5000 digits", {"version": "^" + BIG}, ""),
    ("comparator of 5000 digits", {"version": f">={BIG}.0.0,<{BIG}.1.0"}, ""),
    ("version over int64", {"version": f"{2**64}.0.0"}, ""),
    ("uid of 5000 digits", {"uid": BIG}, "uid"),
    ("time cursor at year 1 +14:00",
     {"sort_by_timestamp": "true", "cursor": _time_cursor("0001-01-01T00:00:00+14:00")}, ""),
    ("time cursor at year 9999 -14:00",
     {"sort_by_timestamp": "true", "cursor": _time_cursor("9999-12-31T23:59:59-14:00")}, ""),
    ("time cursor with a huge offset",
     {"sort_by_timestamp": "true", "cursor": _time_cursor("2026-01-01T00:00:00Z", 2**64)}, ""),
    ("time cursor of 5000 digits",
     {"sort_by_timestamp": "true", "cursor": _time_cursor(BIG)}, ""),
    ("cursor of a 5000-digit int", {"cursor": base64.urlsafe_b64encode(
        f'["p",[{BIG},0,0,"~",0]]'.encode()).decode()}, ""),
    ("cursor with a lone surrogate escape", {"cursor": base64.urlsafe_b64encode(
        b'["p",[1,0,0,"\\ud800",0]]').decode()}, ""),
    ("cursor not base64", {"cursor": "%%%"}, ""),
    ("tag key of 5000 chars", {"tag": "k" * 5000 + ":v"}, ""),
    ("bool as 5000 digits", {"include_deleted": BIG}, "include_deleted"),
]  # fmt: skip

# valid values right at the bounds: answered (an empty page here), never refused
CARDS_VALID: list[tuple[str, dict[str, Any]]] = [
    ("max_date at year 1 UTC", {"max_date": "0001-01-01T00:00:00Z"}),
    ("max_date at year 1 -14:00", {"max_date": "0001-01-01T00:00:00-14:00"}),
    ("max_date at year 9999 UTC", {"max_date": "9999-12-31T23:59:59.999999Z"}),
    ("max_date at year 9999 +14:00", {"max_date": "9999-12-31T23:59:59+14:00"}),
    ("max_date naive", {"max_date": "9999-12-31T23:59:59"}),
    ("max_date as unix time", {"max_date": "0"}),
]


def _expect_refusal(resp: httpx.Response, label: str, names: str = "") -> str | None:
    problem = _problem(resp, label)
    if problem is None and names and names not in resp.json()["detail"]:
        return f"{label}: the detail does not name {names!r}: {resp.text[:300]}"
    return problem


class Http:
    """Requests on a fresh connection after any transport error: a 500 makes uvicorn close the
    connection, and the next case must still be sent (and the failure recorded)."""

    def __init__(self, stack: Stack, **kw: Any) -> None:
        self.url, self.kw = stack.url, kw
        self.client = httpx.AsyncClient(base_url=self.url, timeout=30, **kw)

    async def __aenter__(self) -> Http:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            # sent exactly as written (no client-side normalisation of the path)
            return await self.client.send(self.client.build_request(method, url, **kw))
        except httpx.TransportError as exc:
            await self.client.aclose()
            self.client = httpx.AsyncClient(base_url=self.url, timeout=30, **self.kw)
            return httpx.Response(599, text=f"no response: {exc!r}")

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.send("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.send("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        return await self.send("PUT", url, **kw)


async def test_card_filters_at_the_bounds_are_refused_or_answered(stack: Stack) -> None:
    problems: list[str | None] = []
    async with Http(stack) as http:
        for label, params, names in CARDS_QUERIES:
            resp = await http.get("/api/v1/cards", params=params)
            if names or resp.status_code != 200:
                problems.append(_expect_refusal(resp, label, names))
        for label, params in CARDS_VALID:
            resp = await http.get("/api/v1/cards", params=params)
            if resp.status_code != 200:
                problems.append(f"{label}: {resp.status_code} {resp.text[:300]}")
        # the valid bounds do filter: everything was created before 9999, nothing before year 1
        await _register(stack)
        late = await http.get("/api/v1/cards", params={"max_date": "9999-12-31T23:59:59+14:00"})
        early = await http.get("/api/v1/cards", params={"max_date": "0001-01-01T00:00:00-14:00"})
        assert len(late.json()["cards"]) == 1 and early.json()["cards"] == [], (late, early)
        await _healthy(stack)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


OTHER_QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("wait of 5000 digits", f"/api/v1/commands/{uuid4()}", {"wait": BIG}),
    ("wait 1e309", f"/api/v1/commands/{uuid4()}", {"wait": "1e309"}),
    ("wait nan", f"/api/v1/commands/{uuid4()}", {"wait": "nan"}),
    ("wait -inf", f"/api/v1/commands/{uuid4()}", {"wait": "-inf"}),
    ("metrics uid of 5000 digits", "/api/v1/runs/metrics", {"uid": BIG}),
    ("metrics name of 5000 chars", "/api/v1/runs/metrics", {"uid": str(uuid4()), "name": BIG}),
    ("metrics 101 uids", "/api/v1/runs/metrics", {"uid": [str(uuid4()) for _ in range(101)]}),
]


async def test_other_query_parameters_at_the_bounds_are_refused(stack: Stack) -> None:
    problems = []
    async with Http(stack) as http:
        for label, path, params in OTHER_QUERIES:
            problems.append(_problem(await http.get(path, params=params), label))
        await _healthy(stack)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


# raw JSON: `\ud800` is an escaped lone surrogate, `\u0000` an escaped NUL
KNOWN_BODIES: list[tuple[str, bytes]] = [
    ("sha256 lone surrogate", b'{"registry": "run", "space": "demo", "sha256": ["\\ud800"]}'),
    ("sha256 low surrogate", b'{"registry": "run", "space": "demo", "sha256": ["a\\udfff"]}'),
    ("sha256 NUL", b'{"registry": "run", "space": "demo", "sha256": ["\\u0000"]}'),
    ("space lone surrogate", b'{"registry": "run", "space": "\\ud800", "sha256": []}'),
    ("registry NUL", b'{"registry": "r\\u0000", "space": "demo", "sha256": ["ab"]}'),
    ("space NUL", b'{"registry": "run", "space": "d\\u0000", "sha256": ["ab"]}'),
    ("sha256 of 5000 digits", b'{"registry": "run", "space": "demo", "sha256": [' +
     BIG.encode() + b"]}"),
    ("sha256 not a list", b'{"registry": "run", "space": "demo", "sha256": "ab"}'),
]  # fmt: skip
OUTCOME_BODIES: list[tuple[str, bytes]] = [
    ("command id lone surrogate", b'{"command_ids": ["\\udc00"]}'),
    ("command id NUL", b'{"command_ids": ["\\u0000"]}'),
]


async def test_json_bodies_with_nul_or_lone_surrogates_are_refused(stack: Stack) -> None:
    problems = []
    async with Http(stack) as http:
        for path, cases in (
            ("/api/v1/artifacts/known", KNOWN_BODIES),
            ("/api/v1/commands/outcomes", OUTCOME_BODIES),
        ):
            for label, body in cases:
                resp = await http.post(
                    path, content=body, headers={"content-type": "application/json"}
                )
                problems.append(_expect_refusal(resp, label))
        # the valid request keeps its answer
        ok = await http.post(
            "/api/v1/artifacts/known",
            json={"registry": "run", "space": "demo", "sha256": ["0" * 64]},
        )
        assert ok.status_code == 200 and ok.json() == {"known": []}, ok.text
        await _healthy(stack)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


async def _register(stack: Stack, payload: bytes | None = None) -> tuple[str, str]:
    """A run card, with one 100-byte artifact when `payload` is given: (uid, artifact path)."""
    card = RunCard(space="demo", name="bounds", tags={"k": "v"})
    path = ""
    if payload is not None:
        src = stack.logs / "blob.bin"
        src.write_bytes(payload)
        card.log_artifact(src)
        path = "blob.bin"
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        done = await reg.register_card(card)
    if payload is not None:
        assert [a.path for a in done.artifacts] == [path], done.artifacts
    return str(done.uid), path


PAYLOAD = bytes(range(100))

# (Range header, expected status, expected body for a 206)
RANGES: list[tuple[str, int, bytes | None]] = [
    ("bytes=0-9", 206, PAYLOAD[:10]),
    ("bytes=90-", 206, PAYLOAD[90:]),
    ("bytes=-5", 206, PAYLOAD[-5:]),
    ("bytes=95-1000", 206, PAYLOAD[95:]),
    ("bytes=-1000", 206, PAYLOAD),
    (f"bytes=0-{BIG}", 206, PAYLOAD),  # an end past the file: up to its last byte
    (f"bytes=-{BIG}", 206, PAYLOAD),  # a suffix longer than the file: all of it
    (f"bytes=0000{'0' * 5000}3-4", 206, PAYLOAD[3:5]),  # leading zeros are still 3
    (f"bytes={BIG}-", 416, None),  # a start past the file
    (f"bytes={BIG}-{BIG}9", 416, None),
    (f"bytes={2**63}-{2**64}", 416, None),
    ("bytes=100-", 416, None),
    ("bytes=-0", 416, None),
    ("bytes=5-1", 416, None),
    ("bytes=0-1,3-4", 416, None),
    ("bytes=-", 416, None),
    ("bytes=", 416, None),
    ("bytes=a-b", 416, None),
    ("bytes=1.5-2", 416, None),
    ("bytes=+1-2", 416, None),
    ("bytes=-1-2", 416, None),
    ("bytes=0x10-", 416, None),
    ("bytes=\u00b2-", 416, None),  # a superscript two: str.isdigit() says yes
    ("items=0-1", 416, None),
    ("bytes 0-1", 416, None),
]


async def test_range_headers_are_served_or_refused_with_a_detail(stack: Stack) -> None:
    uid, path = await _register(stack, PAYLOAD)
    url = f"/api/v1/cards/{uid}/artifacts/{path}"
    problems: list[str | None] = []
    async with Http(stack) as http:
        whole = await http.get(url)
        assert whole.status_code == 200 and whole.content == PAYLOAD, whole.status_code
        assert whole.headers["x-content-sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
        for header, status, body in RANGES:
            resp = await http.get(url, headers={"Range": header.encode("latin-1")})
            label = f"Range {header[:40]!r}"
            if resp.status_code != status:
                problems.append(
                    f"{label}: {resp.status_code} (expected {status}) {resp.text[:200]}"
                )
            elif status == 206:
                if resp.content != body:
                    problems.append(f"{label}: wrong bytes {resp.content[:20]!r}")
                start = PAYLOAD.index(body) if body else 0
                want = f"bytes {start}-{start + len(body or b'') - 1}/100"
                if resp.headers.get("content-range") != want:
                    problems.append(f"{label}: Content-Range {resp.headers.get('content-range')}")
            else:
                problems.append(_problem(resp, label))
                if resp.headers.get("content-range") != "bytes */100":
                    problems.append(f"{label}: no Content-Range: bytes */100 on the 416")
        await _healthy(stack)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


def _raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as written (httpx would fix the framing) and return (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _staging_head(path: str, headers: Iterable[str]) -> bytes:
    lines = [f"PUT /api/v1/staging/{uuid4()}/{path} HTTP/1.1", "Host: x", "Connection: close",
             *headers]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def test_staging_headers_at_the_bounds_are_refused(stack: Stack) -> None:
    sha = hashlib.sha256(b"abc").hexdigest()
    problems = []
    async with Http(stack) as http:
        for label, headers in [
            ("sha256 of 5000 digits", {"X-Content-SHA256": BIG}),
            ("sha256 non-ascii", {"X-Content-SHA256": ("\u00e9" * 64).encode("latin-1")}),
            ("sha256 with a NUL-like escape", {"X-Content-SHA256": "%00" * 21 + "a"}),
        ]:
            resp = await http.put(f"/api/v1/staging/{uuid4()}/f.bin", content=b"abc",
                                  headers=headers)  # fmt: skip
            problems.append(_problem(resp, label))
        for label, path in [
            ("path of 5000 chars", "a" * 5000),
            ("path with an invalid utf-8 escape", "%ED%A0%80"),
            ("path with a NUL", "a%00b"),
            ("path traversal", "..%2Fx"),
        ]:
            resp = await http.put(f"/api/v1/staging/{uuid4()}/{path}", content=b"abc",
                                  headers={"X-Content-SHA256": sha})  # fmt: skip
            problems.append(_problem(resp, label))
    port = stack.api_port
    for label, head in [
        ("Content-Length of 5000 digits",
         _staging_head("f.bin", [f"X-Content-SHA256: {sha}", f"Content-Length: {BIG}"])),
        ("Content-Length superscript",
         _staging_head("f.bin", [f"X-Content-SHA256: {sha}", "Content-Length: \u00b2"])),
    ]:  # fmt: skip
        status, body = _raw_request(port, head, b"abc")
        if not 400 <= status < 500:
            problems.append(f"{label}: {status} {body[:200]!r}")
    await _healthy(stack)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


async def test_token_routes_refuse_nul_and_lone_surrogates(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    stack = Stack(
        database_url,
        kafka,
        tmp_path,
        extra_env={"OPSML_GRANT_KEY": "bounds-grant-key-" + "x" * 32},
    )
    async with running(stack):
        made = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "workers.cli", "token", "create", "--name", "root",
             "--scopes", "admin"],
            env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        admin = made.stdout.strip()
        problems = []
        auth = {"Authorization": f"Bearer {admin}"}
        async with Http(stack, headers=auth) as http:
            for label, body in [
                ("name lone surrogate", b'{"name": "\\ud800", "scopes": ["read"]}'),
                ("name NUL", b'{"name": "a\\u0000", "scopes": ["read"]}'),
                ("scope lone surrogate", b'{"name": "a", "scopes": ["\\ud800"]}'),
                ("space lone surrogate",
                 b'{"name": "a", "scopes": ["read"], "spaces": ["\\udc00"]}'),
                ("space NUL", b'{"name": "a", "scopes": ["read"], "spaces": ["\\u0000"]}'),
                ("days of 5000 digits", b'{"name": "a", "scopes": ["read"], "expires_in_days": '
                 + BIG.encode() + b"}"),
            ]:  # fmt: skip
                resp = await http.post(
                    "/api/v1/tokens", content=body, headers={"content-type": "application/json"}
                )
                problems.append(_problem(resp, label))
            for seg in ("%ED%A0%80", "a" * 5000, "%FF"):
                resp = await http.send("DELETE", f"/api/v1/tokens/{seg}")
                problems.append(_problem(resp, f"DELETE token {seg[:20]}"))
            made_ok = await http.post("/api/v1/tokens", json={"name": "ok", "scopes": ["read"]})
            assert made_ok.status_code == 201, made_ok.text
        async with Http(stack) as anon:
            for label, value in [
                ("basic with a NUL user", "Basic " + base64.b64encode(b"a\x00b:").decode()),
                ("basic with invalid utf-8",
                 "Basic " + base64.b64encode(b"\xed\xa0\x80:").decode()),
                ("bearer of 5000 chars", "Bearer " + BIG),
                ("bearer non-ascii", "Bearer \u00e9"),
            ]:  # fmt: skip
                resp = await anon.get(
                    "/api/v1/cards", headers={"Authorization": value.encode("latin-1")}
                )
                problems.append(_problem(resp, label))
        await _healthy(stack)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
