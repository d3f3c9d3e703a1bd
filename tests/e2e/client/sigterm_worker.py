"""A worker process whose handler never returns (run by the SIGTERM test)."""

import sys

import trio

from codeqd import worker
from codeqd.client import Task


async def hold(task: Task) -> None:
    print(f"started {task.id}", flush=True)
    await trio.sleep_forever()


if __name__ == "__main__":
    worker.run_sync({sys.argv[1]: hold}, lease_seconds=60, grace_seconds=0.5, wait_seconds=5)
