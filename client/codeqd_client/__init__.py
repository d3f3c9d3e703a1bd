"""Python client for codeqd (and the Go codeQ service it is wire-compatible with).

``Producer``/``WorkerClient`` block; ``AsyncProducer``/``AsyncWorkerClient`` run
on trio or asyncio (anyio). All raise one exception hierarchy rooted at ``CodeqError``.
The worker runner built on them is :mod:`codeqd_client.worker`, the shell worker
``codeqd-worker`` and the callback receivers' check :func:`codeqd_client.webhooks.verify`.
"""

from codeqd_client._async import AsyncProducer, AsyncWorkerClient
from codeqd_client._calls import RetryPolicy
from codeqd_client._exceptions import (
    BadRequest,
    CodeqError,
    Conflict,
    Forbidden,
    LeaseLost,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    Unreachable,
)
from codeqd_client._models import (
    TERMINAL_STATUSES,
    Artifact,
    NackOutcome,
    NewTask,
    Result,
    Task,
    TaskResult,
    TaskStatus,
)
from codeqd_client._sync import Producer, WorkerClient
from codeqd_client._version import __version__

__all__ = [
    "TERMINAL_STATUSES",
    "Artifact",
    "AsyncProducer",
    "AsyncWorkerClient",
    "BadRequest",
    "CodeqError",
    "Conflict",
    "Forbidden",
    "LeaseLost",
    "NackOutcome",
    "NewTask",
    "NotFound",
    "Producer",
    "RateLimited",
    "Result",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Task",
    "TaskResult",
    "TaskStatus",
    "Unauthorized",
    "Unreachable",
    "WorkerClient",
    "__version__",
]
