"""The worker runner, from the ``codeqd-client`` distribution: :mod:`codeqd_client.worker`.

Re-exported so ``from codeqd import worker`` keeps working with the daemon installed.
"""

from codeqd_client.worker import (
    FATAL,
    REPORT_TIMEOUT,
    Fail,
    Handler,
    Outcome,
    Retry,
    Runner,
    Transport,
    Waitable,
    call_handler,
    default_backend,
    reason_of,
    result_object,
    run,
    run_sync,
)

__all__ = [
    "FATAL",
    "REPORT_TIMEOUT",
    "Fail",
    "Handler",
    "Outcome",
    "Retry",
    "Runner",
    "Transport",
    "Waitable",
    "call_handler",
    "default_backend",
    "reason_of",
    "result_object",
    "run",
    "run_sync",
]
