"""Task ids: time-ordered UUID strings whose last two hex digits carry the shard.

A task's shard is derivable from its id alone, so every id-only request
(heartbeat, result, get) goes straight to the right hash tag.
"""

from __future__ import annotations

import os
import re
import time

_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def new_task_id(shard: int) -> str:
    """A UUIDv7-shaped id (ms timestamp first, so ids sort by creation) for ``shard``."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    h = h[:30] + f"{shard:02x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_task_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def shard_of(task_id: str, shards: int) -> int:
    return int(task_id[-2:], 16) % shards
