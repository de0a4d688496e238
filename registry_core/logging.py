"""Structured logging setup (structlog): JSON in production, pretty on a terminal in dev."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from registry_core.auth import redact_tokens

SECRET_KEYS = frozenset(
    {"token", "password", "secret", "authorization", "grant", "signing_key", "grant_key"}
)


def _redact(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: no credential reaches a log line, whatever a caller passes."""
    for k, v in event.items():
        if k.lower() in SECRET_KEYS:
            event[k] = "[redacted]"
        elif isinstance(v, str) and "opsml_" in v:
            event[k] = redact_tokens(v)
    return event


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr)
