"""Worker and producer processes for the bench's multi-process scenarios (g and the
peers): ``python -m tests.bench._children KIND ARGS...``. Each prints ``ready`` once it
is connected, then works until SIGTERM (or, for a drain, until the queue is empty) and
prints ``done N`` with the count of tasks it finished.

  stream URL TOKEN COMMAND MAX_IN_FLIGHT   codeqd worker stream: each pushed task completed
  rq-worker REDIS_URL QUEUE BURST          RQ SimpleWorker (no fork per job)
  rq-producer REDIS_URL QUEUE BACKLOG      RQ enqueue, as fast as it goes (backlog bounded)
  bs-worker PORT TUBE DRAIN                beanstalkd reserve/delete (DRAIN=1: stop when empty)
  bs-producer PORT TUBE BACKLOG            beanstalkd put, as fast as it goes (backlog bounded)
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

PAYLOAD = '{"data":"' + "x" * 89 + '"}'


def _ready() -> None:
    """Say ``ready`` (connected); for a drain (``BENCH_WAIT_GO=1``), then wait for the
    bench's ``go`` line, so that its clock starts with every worker connected and not
    with the interpreters' start-up (0.05 s for greenstalk, 0.5 s for trio's stack)."""
    print("ready", flush=True)
    if os.environ.get("BENCH_WAIT_GO") == "1":
        sys.stdin.readline()


def _stop_on_term() -> list[bool]:
    stop = [False]

    def handler(signum: int, frame: Any) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, handler)
    return stop


def stream_worker(url: str, token: str, command: str, max_in_flight: int) -> None:
    import orjson
    import trio

    from codeqd_client._ws import Closed, WebSocket

    async def main() -> None:
        done = 0
        ws = await WebSocket.connect(
            f"{url}/v1/codeq/workers/stream", {"Authorization": f"Bearer {token}"}
        )
        _ready()
        await ws.send(
            orjson.dumps(
                {
                    "type": "ready",
                    "commands": [command],
                    "maxInFlight": max_in_flight,
                    "frames": True,
                }
            ).decode()
        )
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def on_term() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(on_term)
                try:
                    while True:
                        frame = orjson.loads(await ws.receive())
                        results = []
                        for msg in frame if isinstance(frame, list) else [frame]:
                            kind = msg["type"]
                            if kind == "task":
                                task = msg["task"]
                                results.append(
                                    {
                                        "type": "result",
                                        "id": task["id"],
                                        "leaseId": task["leaseId"],
                                        "status": "COMPLETED",
                                        "result": {"ok": True},
                                    }
                                )
                            elif kind == "ack":
                                done += 1
                            elif kind == "ping":
                                await ws.send('{"type":"pong"}')
                        if results:
                            await ws.send(orjson.dumps(results).decode())
                except Closed:
                    pass
        with trio.move_on_after(2):
            await ws.close()
        print(f"done {done}", flush=True)

    trio.run(main)


def bench_job(payload: str = "") -> int:
    """The RQ job: nothing (the queue's own cost is what is measured)."""
    return 1


def rq_worker(redis_url: str, queue: str, burst: bool) -> None:
    from redis import Redis
    from rq import Queue, SimpleWorker

    conn = Redis.from_url(redis_url)
    q = Queue(queue, connection=conn)
    w = SimpleWorker([q], connection=conn)
    conn.ping()
    _ready()
    w.work(burst=burst, logging_level="WARNING", with_scheduler=False)
    print("done 0", flush=True)


def rq_producer(redis_url: str, queue: str, backlog: int) -> None:
    from redis import Redis
    from rq import Queue

    # By its module's importable name: run as __main__, this file's own would not be.
    from tests.bench._children import bench_job as job

    stop = _stop_on_term()
    conn = Redis.from_url(redis_url)
    q = Queue(queue, connection=conn)
    made = 0
    print("ready", flush=True)
    while not stop[0]:
        if made % 50 == 0 and len(q) >= backlog:
            continue
        q.enqueue(job, PAYLOAD)
        made += 1
    print(f"done {made}", flush=True)


def bs_worker(port: int, tube: str, drain: bool) -> None:
    import greenstalk

    stop = _stop_on_term()
    done = 0
    with greenstalk.Client(("127.0.0.1", port), watch=tube) as c:
        _ready()
        while not stop[0]:
            try:
                job = c.reserve(timeout=0 if drain else 1)
            except greenstalk.TimedOutError:
                if drain:
                    break
                continue
            c.delete(job)
            done += 1
    print(f"done {done}", flush=True)


def bs_producer(port: int, tube: str, backlog: int) -> None:
    import greenstalk

    stop = _stop_on_term()
    made = 0
    with greenstalk.Client(("127.0.0.1", port), use=tube) as c:
        print("ready", flush=True)
        while not stop[0]:
            if made % 200 == 0 and backlog:
                ready = int(c.stats_tube(tube)["current-jobs-ready"])
                if ready >= backlog:
                    continue
            c.put(PAYLOAD)
            made += 1
    print(f"done {made}", flush=True)


def main(argv: list[str]) -> None:
    kind, *args = argv
    if kind == "stream":
        stream_worker(args[0], args[1], args[2], int(args[3]))
    elif kind == "rq-worker":
        rq_worker(args[0], args[1], args[2] == "1")
    elif kind == "rq-producer":
        rq_producer(args[0], args[1], int(args[2]))
    elif kind == "bs-worker":
        bs_worker(int(args[0]), args[1], args[2] == "1")
    elif kind == "bs-producer":
        bs_producer(int(args[0]), args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    main(sys.argv[1:])
