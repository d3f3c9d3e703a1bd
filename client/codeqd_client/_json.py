"""JSON for the client, on the standard library (the client depends only on httpx and anyio).

Compact UTF-8 bytes, like the daemon's orjson output. ``default`` keeps what
orjson accepted in payloads: datetimes (ISO 8601), UUIDs, enums and dataclasses.
NaN and infinities are refused (they are not JSON): ValueError.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from datetime import date, datetime, time
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes; TypeError/ValueError when it is not JSON."""
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
    ).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; ValueError (``json.JSONDecodeError`` or ``UnicodeDecodeError``) when not."""
    return json.loads(data)
