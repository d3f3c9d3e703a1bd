"""structlog set-up: JSON lines under systemd or in a pipe, coloured key=value on a TTY.

Events are named ``area.what`` (``task.claimed``) with ids as fields; tokens
and secrets are never passed to a log call, and ``_redact`` drops the fields
that could carry them if one slips through.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from codeqd.config import LogConfig

_SECRET_FIELDS = frozenset({"token", "authorization", "secret", "password", "hmac_secret"})


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _SECRET_FIELDS & event.keys():
        event[key] = "***"
    return event


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure(config: LogConfig, stream: Any = None) -> None:
    stream = stream or sys.stderr
    level = getattr(logging, config.level.upper())
    as_json = config.format == "json" or (config.format == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info if as_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (hypercorn, httpx) follow the same level.
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream)
