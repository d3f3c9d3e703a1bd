"""Retry delays: fixed, linear, exponential and the two AWS-style jittered variants."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


class Seconds(float):
    """A duration in seconds. The configuration reads it from ``"250ms"``, ``"5s"``,
    ``"2m"``... (``codeqd.config.Duration``, a subclass)."""


@dataclass(frozen=True)
class BackoffPolicy:
    """How long a task waits before its next attempt: ``policy`` over ``base``, capped
    at ``max`` (``[backoff]`` and ``[backoff.commands.<name>]`` in the configuration)."""

    policy: Literal["fixed", "linear", "exponential", "exp_full_jitter", "exp_equal_jitter"] = (
        "exp_full_jitter"
    )
    base: Seconds = Seconds(5)
    max: Seconds = Seconds(900)


def retry_delay(
    policy: BackoffPolicy, attempts: int, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before the next attempt, after ``attempts`` (≥ 1) have run."""
    base, cap = float(policy.base), float(policy.max)
    n = max(1, attempts)
    match policy.policy:
        case "fixed":
            return min(cap, base)
        case "linear":
            return min(cap, base * n)
        case "exponential":
            return min(cap, base * float(2 ** min(n - 1, 62)))
        case "exp_equal_jitter":
            ceiling = min(cap, base * float(2 ** min(n - 1, 62)))
            return ceiling / 2 + rand() * ceiling / 2
        case _:  # exp_full_jitter
            return rand() * min(cap, base * float(2 ** min(n - 1, 62)))


def backoff_ms(
    policy: BackoffPolicy, attempts: int, rand: Callable[[], float] = random.random
) -> int:
    """``retry_delay`` in whole milliseconds, as a nack or a lease expiry requeues with
    (``policy`` is the task's command's: ``BackoffConfig.for_command``)."""
    return int(retry_delay(policy, attempts, rand) * 1000)
