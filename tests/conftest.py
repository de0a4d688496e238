"""Shared fixtures: real Postgres databases, real Tansu brokers and real worker/API processes,
all on loopback, created per test and removed afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from workers import procs
from workers.dev import start_tansu

ADMIN_URL = os.environ.get(
    "OPSML_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _db_url(name: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A throw-away database on the local Postgres server."""
    name = f"opsml_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _db_url(name)
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[str]:
    """A fresh in-memory Tansu broker on a free loopback port; yields bootstrap servers."""
    (port,) = procs.free_ports(1)
    proc = start_tansu(port, log_path=tmp_path / "tansu.out")
    yield f"127.0.0.1:{port}"
    procs.stop(proc)


@dataclass
class Stack:
    """Worker and API processes of one test, talking to that test's database and broker."""

    database_url: str
    bootstrap: str
    logs: Path
    api_port: int = 0
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            "OPSML_DATABASE_URL": self.database_url,
            "OPSML_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "OPSML_LOG_FORMAT": "console",
            "OPSML_LOCK_RETRY_SECONDS": "0.1",
            "OPSML_STORAGE_URI": str(self.logs / "artifacts"),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        proc = procs.spawn(
            [sys.executable, "-m", "workers.cli", "worker"],
            env={**self.env, **extra_env},
            log_path=self.logs / f"worker{n}.log",
        )
        self.workers.append(proc)
        return proc

    def worker_log(self, n: int = 0) -> str:
        return (self.logs / f"worker{n}.log").read_text()

    def start_api(self) -> None:
        (self.api_port,) = procs.free_ports(1)
        self.api = procs.spawn(
            [sys.executable, "-m", "workers.cli", "api", "--port", str(self.api_port)],
            env=self.env,
            log_path=self.logs / "api.log",
        )
        procs.wait_port("127.0.0.1", self.api_port, 30, self.api)

    async def wait_active(self, epoch: int = 1, timeout: float = 30) -> float:
        """Wait until a sequencer with at least `epoch` is active; returns seconds waited."""
        t0 = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url) as http:
            while time.monotonic() - t0 < timeout:
                resp = await http.get("/healthz")
                if resp.status_code == 200 and (resp.json()["sequencer"]["epoch"] or 0) >= epoch:
                    # the epoch is claimed before catch-up; give the consumer a moment to seek
                    return time.monotonic() - t0
                await asyncio.sleep(0.02)
        raise TimeoutError(f"no active sequencer with epoch >= {epoch}")

    def stop(self) -> None:
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            procs.stop(proc)


@dataclass
class S3:
    endpoint: str
    access_key: str
    secret_key: str

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "OPSML_STORAGE_URI": f"s3://{bucket}/artifacts",
            "OPSML_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:  # a boto3 S3 client
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """One real S3 server (SeaweedFS) for the session; each test makes its own bucket."""
    from workers.dev import start_seaweed

    root = tmp_path_factory.mktemp("seaweedfs")
    server = start_seaweed(
        root / "data", root / "logs", access_key="opsml-test", secret_key="opsml-test-secret",
        buckets=["opsml-test"],
    )  # fmt: skip
    yield S3(server.endpoint, server.access_key, server.secret_key)
    procs.stop(server.proc)


@pytest.fixture
def s3_bucket(s3_server: S3) -> Iterator[str]:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    yield bucket
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(params=["local", "s3"])
async def storage_stack(
    request: pytest.FixtureRequest, database_url: str, kafka: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    """A running stack on local-directory storage, and again on S3 (SeaweedFS)."""
    extra: dict[str, str] = {}
    if request.param == "s3":
        s3: S3 = request.getfixturevalue("s3_server")
        extra = s3.env(request.getfixturevalue("s3_bucket"))
    async with running(Stack(database_url, kafka, tmp_path, extra_env=extra)) as s:
        yield s


@asynccontextmanager
async def running(s: Stack) -> AsyncIterator[Stack]:
    """A worker and an API for `s`, active until the block ends."""
    try:
        s.start_worker()
        s.start_api()
        await s.wait_active()
        yield s
    finally:
        s.stop()


@pytest.fixture
async def stack(database_url: str, kafka: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running(Stack(database_url, kafka, tmp_path)) as s:
        yield s
