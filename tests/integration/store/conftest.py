"""The store tests run on each server codeqd supports: redis-server and KVRocks.

``redis_url`` here is parametrized (``[redis]``, ``[kvrocks]``), so the ``store``
fixture of ``tests/integration/conftest.py`` and every test of this directory run
on both. Without a kvrocks binary the ``[kvrocks]`` variants are skipped (failed
under ``CODEQD_REQUIRE_KVROCKS=1``, as in CI) and the summary says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from codeqd.domain.task import NewTask, parse_new_task
from codeqd.store import now_ms


def new_task(
    command: str = "c", *, created_by: str = "", max_attempts: int = 3, **fields: Any
) -> NewTask:
    """A task to create, as the create route would parse it (payload ``{"v": 1}``)."""
    return parse_new_task(
        {"command": command, "payload": {"v": 1}, **fields},
        now_ms=now_ms(),
        default_max_attempts=max_attempts,
        max_depth=32,
        created_by=created_by,
    )


@pytest.fixture(params=["redis", "kvrocks"])
def redis_url(request: pytest.FixtureRequest) -> str:
    name = "redis_server" if request.param == "redis" else "kvrocks_server"
    server = request.getfixturevalue(name)
    server.flush()
    return server.url  # type: ignore[no-any-return]


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """``redis`` or ``kvrocks``: the server of this variant."""
    return str(request.node.callspec.params["redis_url"])
