"""The store tests run on each server codeqd supports: redis-server and KVRocks.

``redis_url`` here is parametrized (``[redis]``, ``[kvrocks]``), so the ``store``
fixture of ``tests/integration/conftest.py`` and every test of this directory run
on both. Without a kvrocks binary the ``[kvrocks]`` variants are skipped (failed
under ``CODEQD_REQUIRE_KVROCKS=1``, as in CI) and the summary says so.
"""

from __future__ import annotations

import pytest


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
