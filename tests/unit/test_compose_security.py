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
