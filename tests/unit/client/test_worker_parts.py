"""Pure parts of the worker runner and the shell worker."""

from __future__ import annotations

from typing import Any

import pytest

from codeqd.client import AsyncWorkerClient, Task
from codeqd_client import worker
from codeqd_client._worker_cli import failure_reason, result_from_stdout, task_env


def test_result_object() -> None:
    assert worker.result_object(None) == {}
    assert worker.result_object({"a": 1}) == {"a": 1}
    assert worker.result_object([1, 2]) == {"value": [1, 2]}
    with pytest.raises(TypeError):
        worker.result_object({"a": object()})


def test_reason_of() -> None:
    assert worker.reason_of(ValueError("boom")) == "ValueError: boom"
    assert worker.reason_of(KeyError()) == "KeyError"
    long = worker.reason_of(RuntimeError("x" * 5000), limit=100)
    assert len(long) == 100 and long.startswith("...")


def test_runner_rejects_bad_arguments() -> None:
    client = AsyncWorkerClient("http://127.0.0.1:1", "t")
    with pytest.raises(ValueError):
        worker.Runner({}, client)
    with pytest.raises(ValueError):
        worker.Runner({"c": lambda t: None}, client, concurrency=0)
    runner = worker.Runner({"b": lambda t: None, "a": lambda t: None}, client)
    assert runner.commands == ["a", "b"]
    assert worker.Runner({"*": lambda t: None}, client).commands is None


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (b"", {}),
        (b"  \n", {}),
        (b'{"ok": true}\n', {"ok": True}),
        (b"[1]", {"value": [1]}),
        (b"done\n", {"stdout": "done"}),
    ],
)
def test_result_from_stdout(stdout: bytes, expected: dict[str, Any]) -> None:
    assert result_from_stdout(stdout) == expected


def test_failure_reason() -> None:
    assert failure_reason(3, b"noise\ndisk full\n") == "exit 3: noise\ndisk full"
    assert failure_reason(1, b"") == "exit 1"
    assert failure_reason(-9, b"") == "killed by SIGKILL"
    assert failure_reason(2, b"x" * 5000).endswith("x" * 10)
    assert len(failure_reason(2, b"x" * 5000)) < 2100


def test_task_env_drops_the_token_and_the_payload() -> None:
    task = Task.from_wire(
        {
            "id": "t1",
            "command": "c",
            "payload": {"big": "x"},
            "status": "IN_PROGRESS",
            "attempts": 2,
            "maxAttempts": 5,
            "tenantId": "acme",
        }
    )
    env = task_env(task, {"PATH": "/bin", "CODEQD_TOKEN": "secret"})
    assert "CODEQD_TOKEN" not in env and env["PATH"] == "/bin"
    assert env["CODEQ_TASK_ID"] == "t1" and env["CODEQ_ATTEMPT"] == "2"
    assert env["CODEQ_MAX_ATTEMPTS"] == "5" and env["CODEQ_TENANT_ID"] == "acme"
    assert "payload" not in env["CODEQ_TASK_JSON"] and '"id":"t1"' in env["CODEQ_TASK_JSON"]
