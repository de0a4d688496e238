"""The production compose file may not run open: its env turns access control on, the secrets
have no defaults, and the settings it produces demand tokens on the API's bind address."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from registry_core.settings import Settings

COMPOSE = Path(__file__).parents[2] / "infra" / "docker-compose.yml"
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")


def _interpolate(value: str) -> str:
    """Compose's `${VAR:?message}` with a stand-in value, as an operator's env file would give."""

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        return (
            default[2:] if default and default.startswith(":-") else f"{name.lower()}-" + "x" * 32
        )

    return re.sub(r"\$\{(\w+)(:[?-][^}]*)?\}", one, value)


def test_the_production_stack_requires_tokens_and_secrets() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    env = spec["x-opsml-env"]
    assert env["OPSML_AUTH"] == "tokens"
    for secret in ("OPSML_GRANT_KEY", "OPSML_KAFKA_CLIENT_SASL_PASSWORD"):
        assert REQUIRED.match(env[secret]), f"{secret} must be required, without a default"
    api = spec["services"]["api"]
    host = api["command"][api["command"].index("--host") + 1]
    settings = Settings(
        **{k.removeprefix("OPSML_").lower(): _interpolate(str(v))
           for k, v in env.items() if k.startswith("OPSML_")}
    )  # fmt: skip
    assert settings.auth_required(host) is True
    # and without a key, the API on that address refuses to start
    no_key = settings.model_copy(update={"grant_key": None, "auth": "auto"})
    try:
        no_key.auth_required(host)
    except ValueError as exc:
        assert "OPSML_GRANT_KEY" in str(exc)
    else:
        raise AssertionError("the API would start open beyond loopback")
    kafka = spec["services"]["kafka"]["environment"]
    assert "EXTERNAL:SASL_" in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]


ROOT = Path(__file__).parents[2]
OPSML_SERVICES = ("migrate", "worker", "api")


def _probe_url(service: dict[str, object]) -> str:
    test = service["healthcheck"]["test"]  # type: ignore[index]
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+/\w+", " ".join(test))
    return url


def test_compose_runs_the_image_as_on_kubernetes() -> None:
    """Non-root, read-only root filesystem with a tmpfs, no capabilities, and the same probes
    as infra/k8s: the API's /readyz on 8000, the worker's /readyz on its health port."""
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    for name in OPSML_SERVICES:
        svc = services[name]
        assert svc["read_only"] is True, name
        assert svc["user"].split(":")[0] not in ("0", "root"), name
        assert any(t.startswith("/tmp") for t in svc["tmpfs"]), name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
    env = spec["x-opsml-env"]
    assert _probe_url(services["api"]) == "http://127.0.0.1:8000/readyz"
    assert _probe_url(services["worker"]) == (
        f"http://127.0.0.1:{env['OPSML_WORKER_HEALTH_PORT']}/readyz"
    )
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert env["OPSML_LOG_FORMAT"] == "json"


def test_the_image_is_unprivileged_and_its_context_small() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert ":" in base and not base.endswith(":latest")
    (user,) = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user.split(":")[0] not in ("root", "0")
    assert "/readyz" in dockerfile.split("HEALTHCHECK", 1)[1]
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests", "**/.env", ".opsml"} <= ignored
    copied = re.findall(r"^COPY (\S+)", dockerfile, re.M)  # what the build needs stays in
    assert copied and not [c for c in copied if c.rstrip("/") in ignored]
