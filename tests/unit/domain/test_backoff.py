"""Retry delays for each policy, their caps and their jitter bounds."""

from __future__ import annotations

import pytest

from codeqd.config import BackoffPolicy, Duration
from codeqd.domain.backoff import retry_delay


def policy(name: str, base: float = 5, cap: float = 900) -> BackoffPolicy:
    return BackoffPolicy(policy=name, base=Duration(base), max=Duration(cap))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "delays"),
    [
        ("fixed", [5, 5, 5, 5]),
        ("linear", [5, 10, 15, 20]),
        ("exponential", [5, 10, 20, 40]),
    ],
)
def test_deterministic_policies(name: str, delays: list[float]) -> None:
    assert [retry_delay(policy(name), n) for n in (1, 2, 3, 4)] == delays


@pytest.mark.parametrize(
    "name", ["fixed", "linear", "exponential", "exp_full_jitter", "exp_equal_jitter"]
)
def test_capped_even_after_many_attempts(name: str) -> None:
    assert retry_delay(policy(name, cap=60), 10_000, rand=lambda: 0.999) <= 60


def test_full_jitter_spans_zero_to_ceiling() -> None:
    p = policy("exp_full_jitter")
    assert retry_delay(p, 3, rand=lambda: 0.0) == 0
    assert retry_delay(p, 3, rand=lambda: 0.5) == 10
    assert retry_delay(p, 3, rand=lambda: 1.0) == 20


def test_equal_jitter_keeps_half() -> None:
    p = policy("exp_equal_jitter")
    assert retry_delay(p, 3, rand=lambda: 0.0) == 10
    assert retry_delay(p, 3, rand=lambda: 1.0) == 20


def test_attempt_zero_counts_as_first() -> None:
    assert retry_delay(policy("exponential"), 0) == 5
