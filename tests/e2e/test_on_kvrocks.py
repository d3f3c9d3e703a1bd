"""The daemon's lifecycle on KVRocks (``store.mode = external``): the same tests as
``test_daemon.py``, with every daemon of this module pointed at the session's
KVRocks (flushed for each test). Skipped without a kvrocks binary (failed in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Daemon, merge
from tests.e2e.test_daemon import (
    test_delayed_task_is_promoted,
    test_full_lifecycle,
    test_lease_expiry_retries_then_dead_letters,
    test_long_poll_is_woken_by_a_create_not_by_polling,
)

__all__ = [
    "test_delayed_task_is_promoted",
    "test_full_lifecycle",
    "test_lease_expiry_retries_then_dead_letters",
    "test_long_poll_is_woken_by_a_create_not_by_polling",
]


@pytest.fixture
def daemon_factory(tmp_path_factory: pytest.TempPathFactory, kvrocks_url: str) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(config: dict[str, Any] | None = None, start: bool = True) -> Daemon:
        store = {"store": {"mode": "external", "url": kvrocks_url}}
        d = Daemon(tmp_path_factory.mktemp("codeqd-kv"), merge(store, config or {}))
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in made:
        d.close()
