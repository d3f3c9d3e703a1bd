"""Thousands of parked long-polls: every one answered, the store not swamped.

The issue: 3,000 concurrent long-poll claims led to 503s from the store pool and 231
were never answered within 35 s. Now parked claims and result waits are counted
together against ``actors.ingress.max_waiters`` (429 past it), their store look-ups
share a bounded set of slots, and a request that cannot get one before its
deadline ends its wait with 204 instead of queueing for the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import trio
import trio.testing

from tests.integration.auth.conftest import serving
from tests.integration.conftest import make_config

PARKED = 3000
MAX_WAITERS = 2500
TASKS = 10


async def raw_request(host: str, port: int, head: str, body: bytes = b"") -> int:
    """One request on its own connection (``Connection: close``); its status code."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(head.encode() + body)
        data = b""
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


async def test_3000_parked_claims_are_all_answered(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(
        tmp_path,
        actors={"ingress": {"bind": "127.0.0.1:0", "max_waiters": MAX_WAITERS}},
        store={"max_connections": 16},
    )
    async with serving(nursery, config, redis_url) as api:
        url = urlsplit(api.base)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        body = b'{"commands":["parked"],"waitSeconds":8}'
        head = (
            f"POST /v1/codeq/tasks/claim HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {api.worker}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        statuses: list[int] = []
        others: list[float] = []
        other_failures: list[int] = []
        peak = 0

        async def park() -> None:
            statuses.append(await raw_request(host, port, head, body))

        async def other_routes() -> None:
            nonlocal peak
            while len(statuses) < PARKED:
                peak = max(peak, api.ctx.hub.waiting)
                started = time.perf_counter()
                r = await api.call("GET", "/admin/queues/parked", api.admin)
                others.append(time.perf_counter() - started)
                if r.status_code != 200:
                    other_failures.append(r.status_code)
                await trio.sleep(0.05)  # paces the probe; the assertions do not depend on it

        with trio.fail_after(60):
            async with trio.open_nursery() as clients:
                for _ in range(PARKED):
                    clients.start_soon(park)
                clients.start_soon(other_routes)
                while api.ctx.hub.waiting < 1000 and len(statuses) < PARKED - MAX_WAITERS:
                    await trio.sleep(0.05)
                for _ in range(TASKS):
                    await api.create("parked", {})

        assert len(statuses) == PARKED
        counts = {s: statuses.count(s) for s in set(statuses)}
        assert set(counts) <= {200, 204, 429}, counts
        assert counts.get(200) == TASKS, counts  # each task handed out once, to a parked claim
        assert other_failures == []
        assert api.ctx.hub.waiting == 0
        others.sort()
        p99 = others[int(len(others) * 0.99)] if others else 0.0
        print(f"parked: {counts}, at most {peak} at once; other route p99 {p99 * 1000:.1f} ms")


async def test_result_waits_count_against_the_same_limit(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(tmp_path, actors={"ingress": {"bind": "127.0.0.1:0", "max_waiters": 1}})
    async with serving(nursery, config, redis_url) as api:
        task = await api.create("job", {})
        got: list[int] = []

        async def wait_result() -> None:
            r = await api.call("GET", f"/tasks/{task['id']}/result?waitSeconds=10", api.producer)
            got.append(r.status_code)

        nursery.start_soon(wait_result)
        with trio.fail_after(5):
            while api.ctx.hub.waiting < 1:
                await trio.sleep(0.01)
        r = await api.claim(commands=["no-work"], waitSeconds=1)  # it would park
        assert r.status_code == 429, r.text
        assert r.json()["operation"] == "claim"
        r = await api.call("GET", f"/tasks/{task['id']}/result?waitSeconds=1", api.producer)
        assert r.status_code == 429 and r.json()["operation"] == "result", r.text
        # A long-poll that finds work at once never parks: the cap does not refuse it.
        claimed = await api.claim(commands=["job"], waitSeconds=1)
        assert claimed.status_code == 200, claimed.text
        r = await api.call(
            "POST",
            f"/tasks/{task['id']}/result",
            api.worker,
            {"status": "COMPLETED", "result": {}, "leaseId": claimed.json()["leaseId"]},
        )
        assert r.status_code == 200, r.text
        with trio.fail_after(5):
            while not got:
                await trio.sleep(0.01)
        assert got == [200]  # the parked wait was woken by the result


async def test_a_wake_up_its_waiter_cannot_use_goes_to_the_next_waiter(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    """The oldest waiters are woken first, and they are also the nearest to their
    deadlines. If a deadline comes before the waiter gets a slot to look, the wake-up
    passes to the next waiter instead of ending with it (the task would wait for the
    next look)."""
    config = make_config(tmp_path, actors={"ingress": {"bind": "127.0.0.1:0"}})
    async with serving(nursery, config, redis_url) as api:
        hub = api.ctx.hub
        got: dict[str, int] = {}

        async def claim(name: str, wait: int) -> None:
            r = await api.claim(commands=["passed"], waitSeconds=wait)
            got[name] = r.status_code

        # Two old waiters: each create's wake-up comes twice (this process's own hint and
        # the store's pub/sub message), and each wakes the oldest idle waiter.
        for n, (name, wait) in enumerate([("old1", 1), ("old2", 1), ("young", 30)], 1):
            nursery.start_soon(claim, name, wait)
            with trio.fail_after(5):
                while hub.waiting < n:
                    await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()  # all three looked once and wait
        # Every look-up slot taken: the woken old ones cannot look before their deadline.
        holders = [object() for _ in range(int(hub.checks.total_tokens))]
        for h in holders:
            hub.checks.acquire_on_behalf_of_nowait(h)
        await api.create("passed", {})
        with trio.fail_after(5):
            while not {"old1", "old2"} <= set(got):
                await trio.sleep(0.01)
        assert got == {"old1": 204, "old2": 204}
        for h in holders:
            hub.checks.release_on_behalf_of(h)
        with trio.fail_after(5):  # far below "young"'s 30 s: only the passed wake-up ends it
            while "young" not in got:
                await trio.sleep(0.01)
        assert got["young"] == 200


async def test_no_waiter_outlives_its_claim(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    """A long-poll claim registers for wake-ups before its first look; whichever way it
    ends (work at once, its wait running out, refused at the cap, served after parking)
    its waiter is gone: a stale one would take wake-ups meant for others."""
    config = make_config(tmp_path, actors={"ingress": {"bind": "127.0.0.1:0", "max_waiters": 1}})
    async with serving(nursery, config, redis_url) as api:
        hub = api.ctx.hub
        assert (await api.claim(commands=["w"], waitSeconds=1)).status_code == 204
        assert hub.registered == 0
        await api.create("w", {})
        assert (await api.claim(commands=["w"], waitSeconds=1)).status_code == 200
        assert hub.registered == 0
        got: list[int] = []

        async def park() -> None:
            got.append((await api.claim(commands=["w"], waitSeconds=20)).status_code)

        nursery.start_soon(park)
        with trio.fail_after(5):
            while hub.waiting < 1:
                await trio.sleep(0.01)
        assert (await api.claim(commands=["w"], waitSeconds=1)).status_code == 429
        assert hub.registered == 1  # the parked claim's own
        await api.create("w", {})
        with trio.fail_after(5):
            while not got:
                await trio.sleep(0.01)
        assert got == [200]
        assert hub.registered == 0
