"""Kafka SASL/TLS settings reach every aiokafka client: the worker's and the API's (from OPSML_*)
and the data scientist's (from /api/v1/config, so they never set broker settings themselves).

Not run against a live SASL/TLS broker: Tansu 0.6.0 refuses `--cert` together with `--key`,
and its SCRAM exchange fails in aiokafka even with the right password (docs/security.md)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from client.registry import _kafka_security
from registry_core.contracts.http import KafkaConfig
from registry_core.settings import Settings


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test CA")
    root = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test-ca", "-keyout", str(root / "ca.key"), "-out", str(root / "ca.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return root / "ca.pem"


def _loaded_cas(ctx: object) -> list[dict[str, object]]:
    assert isinstance(ctx, ssl.SSLContext)
    return ctx.get_ca_certs()


async def test_server_settings_pass_sasl_and_tls_to_aiokafka(ca_pem: Path) -> None:
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="worker",
        kafka_sasl_password="pw-worker",
        kafka_ssl_cafile=str(ca_pem),
    )
    kw = s.kafka_client_kwargs()
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("worker", "pw-worker")
    [ca] = _loaded_cas(kw["ssl_context"])
    assert ("commonName", "test-ca") in ca["subject"][0]  # type: ignore[index]
    # aiokafka accepts the combination (it validates it when the client is built)
    AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **kw)  # type: ignore[arg-type]
    AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **kw)  # type: ignore[arg-type]
    assert "pw-worker" not in repr(s)  # secrets stay out of reprs (and so out of logs)


def test_plaintext_stays_plain() -> None:
    assert Settings().kafka_client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert _kafka_security(_config()) == {"security_protocol": "PLAINTEXT"}


async def test_clients_build_their_kafka_security_from_the_registry_config(ca_pem: Path) -> None:
    kw = _kafka_security(
        _config(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="clients",
            sasl_password="pw-clients",
            ssl_ca_pem=ca_pem.read_text(),
        )
    )
    assert kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("clients", "pw-clients")
    assert len(_loaded_cas(kw["ssl_context"])) == 1
    AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **kw)


def _config(**kw: object) -> KafkaConfig:
    return KafkaConfig(
        bootstrap_servers="127.0.0.1:9092",
        commands_topic="c",
        events_topic="e",
        max_message_bytes=1024,
        **kw,  # type: ignore[arg-type]
    )
