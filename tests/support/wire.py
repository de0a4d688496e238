"""Wire-level test data shared by unit and integration tests: a valid RegisterCard payload to
mutate, and the name rule restated independently of registry_core/domain/names.py."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

_NAME_CHARS = set(string.ascii_lowercase + string.digits + "-")


def command(**overrides: Any) -> dict[str, Any]:
    """A valid RegisterCard as it travels on Kafka, with `overrides` applied."""
    body: dict[str, Any] = {
        "type": "register_card",
        "schema_version": 1,
        "command_id": str(uuid4()),
        "issued_at": datetime.now(UTC).isoformat(),
        "registry": "run",
        "space": "demo",
        "name": "churn",
        "card_type": "RunCard",
    }
    body.update(overrides)
    return body


def obeys_name_rule(value: object) -> bool:
    """1-64 of [a-z0-9-], not starting or ending with '-' (ASCII only: no homoglyphs)."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 64
        and set(value) <= _NAME_CHARS
        and value[0] != "-"
        and value[-1] != "-"
    )
