"""Structured logging setup (structlog): JSON in production, pretty on a terminal in dev."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
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


def _dumps(obj: Any, **_: Any) -> str:
    """orjson for the JSON lines (several times faster than json.dumps); str() for the rest."""
    return orjson.dumps(obj, default=str).decode()


def _uvicorn_access(
    _: object, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """uvicorn's access line as fields: `client`, `method`, `path`, `http_version`, `status`
    (its record carries them as the format's arguments; other records' arguments are already
    in their message)."""
    args = event.pop("positional_args", None)
    record = event.get("_record")
    if record is not None and record.name == "uvicorn.access":
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, version, status = args
            event.update(
                event="request", client=client, method=method, path=path,
                http_version=version, status=status,
            )  # fmt: skip
    return event


def _stdlib_json_handler(renderer: structlog.typing.Processor) -> logging.Handler:
    """A stderr handler that writes every stdlib record (uvicorn, aiokafka, asyncpg, warnings)
    as one JSON object, with the same fields and the request's bound context as structlog's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            pass_foreign_args=True,
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _uvicorn_access,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact,
                renderer,
            ],
        )
    )
    return handler


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """JSON mode: an uncaught exception is one JSON line too, not a bare traceback."""
    logging.getLogger("opsml").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """structlog for the project's own lines. With `fmt="json"` (production), every other line
    of the process too: stdlib loggers (uvicorn's access and error logs, aiokafka, asyncpg),
    warnings and uncaught exceptions go through the same JSON renderer, one object per line.
    `console` (the dev default) stays pretty, with stdlib lines as Python prints them."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    json_mode = fmt == "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json_mode
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
    if not json_mode:
        logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr)
        return
    # what no JSON line shows, so no record gathers it (the caller's frame, process and thread):
    # an access line per request costs about half as much without them
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers = [_stdlib_json_handler(renderer)]
    root.setLevel(max(lvl, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def uvicorn_log_config(fmt: str) -> dict[str, Any] | None:
    """What `uvicorn.run(log_config=...)` gets: in JSON mode None, so uvicorn installs no
    plain-text handlers of its own and its loggers reach the JSON handler above; in console
    mode uvicorn's own configuration, as before."""
    if fmt == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG
