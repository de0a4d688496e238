"""The backing services of `opsml dev`: SeaweedFS (S3) and Tansu (Kafka protocol), each on
loopback with every port chosen free and passed explicitly."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from workers import procs

TANSU_BUCKET = "tansu"
ARTIFACT_BUCKET = "opsml-artifacts"


@dataclass
class S3Server:
    proc: subprocess.Popen[bytes]
    endpoint: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """Environment for Tansu's S3 storage engine and for aioboto3."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def start_seaweed(
    data_dir: Path, log_dir: Path, *, access_key: str, secret_key: str, buckets: list[str]
) -> S3Server:
    """SeaweedFS `mini` on loopback, every port chosen free and passed explicitly."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (master, master_g, vol, vol_g, filer, filer_g, s3, s3_g, webdav, debug,
     lance) = procs.free_ports(11)  # fmt: skip
    # The plugin worker inside `weed mini` dials the admin port + 10000 whatever
    # -admin.port.grpc says: any other gRPC port left it reconnecting every few seconds, forever.
    admin, admin_g = procs.free_port_pair(10_000)
    args = [
        procs.weed_binary(), f"-logdir={log_dir}", "mini", f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-admin.ui=false",
        f"-master.port={master}", f"-master.port.grpc={master_g}", f"-volume.port={vol}",
        f"-volume.port.grpc={vol_g}", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", "-webdav=false", f"-webdav.port={webdav}",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_g}", f"-debug.port={debug}",
        f"-s3.port.lance={lance}", "-s3.port.iceberg=0", f"-bucket={','.join(buckets)}",
        # no pause between the last heartbeat and the volume server's stop (1 s in mini): the
        # stack stops within 3 s (docs/architecture.md)
        "-volume.preStopSeconds=0",
    ]  # fmt: skip
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    proc = procs.spawn(args, env=env, log_path=log_dir / "seaweedfs.out")
    server = S3Server(proc, f"http://127.0.0.1:{s3}", access_key, secret_key)
    try:
        procs.wait_port("127.0.0.1", s3, 60, proc)
        _wait_buckets(server, buckets, 60)
    except BaseException:
        procs.stop(proc)
        raise
    return server


def _wait_buckets(server: S3Server, buckets: list[str], timeout: float) -> None:
    """S3 answers before the buckets from -bucket exist; wait until they do."""
    import boto3  # botocore comes with aioboto3; a sync check is simplest here

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            for bucket in buckets:
                client.head_bucket(Bucket=bucket)
            return
        except Exception as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"S3 buckets {buckets} not ready: {last}")


def start_tansu(port: int, *, storage: str = "memory://tansu/", env: dict[str, str] | None = None,
                log_path: Path | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    url = f"tcp://127.0.0.1:{port}"
    args = [
        procs.tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
        "--storage-engine", storage,
    ]  # fmt: skip
    proc = procs.spawn(args, env=env, log_path=log_path)
    try:
        procs.wait_port("127.0.0.1", port, 30, proc)
    except BaseException:
        procs.stop(proc)
        raise
    return proc
