"""The supervisor against a real store: one-for-one restarts, the restart-intensity
limit, and a clean stop. Actors here are small modules-level functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from codeqd.config import LoopActorConfig
from codeqd.context import Context
from codeqd.live import Live
from codeqd.supervisor import EXIT_GAVE_UP, EXIT_OK, ActorSpec, Supervisor
from tests.integration.conftest import make_config

RUNS: dict[str, int] = {}


async def always_fails(ctx: Context, live: Live[Any], *, task_status: Any) -> None:
    RUNS["always_fails"] = RUNS.get("always_fails", 0) + 1
    raise RuntimeError("boom")


async def fails_twice(ctx: Context, live: Live[Any], *, task_status: Any) -> None:
    RUNS["fails_twice"] = RUNS.get("fails_twice", 0) + 1
    if RUNS["fails_twice"] <= 2:
        raise RuntimeError("not yet")
    task_status.started("up")
    await ctx.shutting_down.wait()


def spec(name: str) -> ActorSpec:
    return ActorSpec(name, globals()[name], lambda c: LoopActorConfig())


def _config(tmp_path: Path, redis_url: str) -> Any:
    return make_config(
        tmp_path,
        store={"mode": "external", "url": redis_url},
        supervisor={
            "max_restarts": 3,
            "window_seconds": 60,
            "backoff_base": 0.001,
            "backoff_max": 0.01,
        },
    )


async def test_restart_intensity_stops_the_daemon(tmp_path: Path, redis_url: str) -> None:
    RUNS.clear()
    sup = Supervisor(_config(tmp_path, redis_url), services=[spec("always_fails")])
    with trio.fail_after(10):
        assert await sup.run() == EXIT_GAVE_UP
    assert RUNS["always_fails"] == 4  # the first run and 3 restarts, then the limit


async def test_one_for_one_restart_then_clean_stop(tmp_path: Path, redis_url: str) -> None:
    RUNS.clear()
    sup = Supervisor(_config(tmp_path, redis_url), services=[spec("fails_twice")])
    codes: list[int] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            codes.append(await sup.run())

        nursery.start_soon(run)
        with trio.fail_after(10):
            await sup.ready.wait()
        assert sup.restarts == {"fails_twice": 2}
        sup.stop()
    assert codes == [EXIT_OK]


async def test_a_batch_actor_that_stops_beating_is_stale(tmp_path: Path) -> None:
    sup = Supervisor(make_config(tmp_path))
    now = trio.current_time()
    for live in sup.lives.values():
        live.beat = now
    assert sup.stale_actors(now + 5) == []
    sup.lives["reaper"].beat = now - 60  # reaper interval 1 s: allowance 10 s
    assert sup.stale_actors(now) == ["reaper"]
    sup.lives["reaper"].beat = None  # disabled actors don't beat and are never stale
    assert sup.stale_actors(now + 3600) == [n for n in sup.lives if n != "reaper"]
