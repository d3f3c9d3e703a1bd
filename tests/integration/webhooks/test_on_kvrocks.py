"""The result-callback outbox on KVRocks: the same tests as ``test_result_callbacks.py``,
with this module's store on the session's KVRocks (flushed for each test)."""

from __future__ import annotations

import pytest

from tests.integration.webhooks.test_result_callbacks import (
    test_completed_task_calls_back_signed,
    test_failed_dead_lettered_and_cancelled_tasks_call_back,
    test_two_dispatchers_on_one_store_send_each_attempt_once,
)

__all__ = [
    "test_completed_task_calls_back_signed",
    "test_failed_dead_lettered_and_cancelled_tasks_call_back",
    "test_two_dispatchers_on_one_store_send_each_attempt_once",
]


@pytest.fixture
def redis_url(kvrocks_url: str) -> str:
    return kvrocks_url
