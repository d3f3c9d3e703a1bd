"""Embedded KVRocks (``store.server_bin`` = a kvrocks binary): started with its own
config file, supervised like redis-server. The same tests as ``test_daemon.py``, with
every daemon of this module embedding KVRocks (the store's kill -9 under load is
``tests/faults/test_kvrocks_crash.py``). Skipped without a kvrocks binary (failed
in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Daemon, daemons, need_kvrocks
from tests.e2e.test_daemon import (
    test_a_leftover_store_is_taken_over,
    test_full_lifecycle,
    test_kill_9_loses_nothing_and_strands_nothing,
    test_sigterm_answers_long_polls_and_exits_clean,
)

__all__ = [
    "test_a_leftover_store_is_taken_over",
    "test_full_lifecycle",
    "test_kill_9_loses_nothing_and_strands_nothing",
    "test_sigterm_answers_long_polls_and_exits_clean",
]


@pytest.fixture
def daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from daemons(tmp_path_factory, {"store": {"server_bin": need_kvrocks()}})


def test_the_embedded_kvrocks_config(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory({"store": {"appendfsync": "always"}})
    conf = (d.state_dir / "store" / "kvrocks.conf").read_text().splitlines()
    assert "resp3-enabled yes" in conf
    assert "rocksdb.write_options.sync yes" in conf
    assert "bind 127.0.0.1" in conf
    assert any(line.startswith("port ") and line != "port 0" for line in conf)
    assert '"server":"KVRocks 2.10' in d.log()
