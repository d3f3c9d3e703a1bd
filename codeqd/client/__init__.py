"""Python client for codeqd (and the Go codeQ service it is wire-compatible with).

``Producer``/``WorkerClient`` block; ``AsyncProducer``/``AsyncWorkerClient`` run
on trio or asyncio. All raise one exception hierarchy rooted at ``CodeqError``.
The worker runner built on them is :mod:`codeqd.worker`.
"""

from codeqd.client._async import AsyncProducer, AsyncWorkerClient
from codeqd.client._calls import RetryPolicy
from codeqd.client._exceptions import (
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
from codeqd.client._models import (
    TERMINAL_STATUSES,
    Artifact,
    NackOutcome,
    NewTask,
    Result,
    Task,
    TaskResult,
    TaskStatus,
)
from codeqd.client._sync import Producer, WorkerClient

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
]
