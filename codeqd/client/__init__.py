"""The Python client, from the ``codeqd-client`` distribution (package :mod:`codeqd_client`).

The daemon depends on that distribution and re-exports it here, so
``from codeqd.client import Producer`` keeps working; an application that needs
only the client installs ``codeqd-client`` (httpx and anyio) and imports
``codeqd_client``. See docs/client.md.
"""

from codeqd_client import (
    TERMINAL_STATUSES,
    Artifact,
    AsyncProducer,
    AsyncWorkerClient,
    BadRequest,
    CodeqError,
    Conflict,
    Forbidden,
    LeaseLost,
    NackOutcome,
    NewTask,
    NotFound,
    Producer,
    RateLimited,
    Result,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    Task,
    TaskResult,
    TaskStatus,
    Unauthorized,
    Unreachable,
    WorkerClient,
)

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
