"""The daemon's lifecycle on KVRocks (``store.mode = external``): the same tests as
``test_daemon.py``, with every daemon of this module pointed at the session's
KVRocks (flushed for each test). Skipped without a kvrocks binary (failed in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import daemons
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
    yield from daemons(tmp_path_factory, {"store": {"mode": "external", "url": kvrocks_url}})
