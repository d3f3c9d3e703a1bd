"""A codeqd worker in Python: two handlers, four at a time, until SIGTERM or Ctrl-C.

    CODEQD_URL=http://127.0.0.1:8080 \
    CODEQD_TOKEN=$(codeqd token --role worker --events greet,word-count) \
        python examples/worker.py

Returning completes the task with the returned object; raising retries it
(nack, with the exception as the reason); ``worker.Fail`` fails it for good.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from codeqd_client import Task, worker  # or codeqd.worker, codeqd.client (daemon)


async def greet(task: Task) -> dict[str, Any]:
    """An async handler: runs on the event loop (trio or asyncio), may await anything."""
    name = task.payload.get("name")
    if not isinstance(name, str) or not name:
        raise worker.Fail("payload needs a 'name' string")  # no point retrying
    await anyio.sleep(0)  # real work would await I/O here
    return {"greeting": f"hello, {name}"}


def word_count(task: Task) -> dict[str, Any]:
    """A plain function: runs in a thread, so blocking calls are fine."""
    return {"words": len(str(task.payload.get("text", "")).split())}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker.run_sync(
        {"greet": greet, "word-count": word_count},
        concurrency=4,  # tasks at once
        lease_seconds=60,  # heartbeated every 20 s while a handler runs
        grace_seconds=10,  # on SIGTERM: time to finish before tasks are handed back
    )
