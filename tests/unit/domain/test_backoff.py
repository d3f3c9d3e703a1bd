"""Retry delays for each policy, their caps and their jitter bounds."""

from __future__ import annotations

import random

import pytest

from codeqd.config import Duration
from codeqd.domain.backoff import BackoffPolicy, backoff_ms, retry_delay


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


def test_defaults_are_full_jitter_from_5s_to_15min() -> None:
    p = BackoffPolicy()
    assert (p.policy, p.base, p.max) == ("exp_full_jitter", 5, 900)


@pytest.mark.parametrize(
    ("name", "base", "cap", "attempts", "expected"),
    [
        ("fixed", 2.5, 1, 1, 1),  # a base above the cap is capped
        ("linear", 0.5, 100, 7, 3.5),
        ("exponential", 0.25, 100, 5, 4),
        ("exponential", 1, 30, 6, 30),  # 32 capped at 30
    ],
)
def test_base_and_cap(name: str, base: float, cap: float, attempts: int, expected: float) -> None:
    assert retry_delay(policy(name, base, cap), attempts) == expected


@pytest.mark.parametrize("name", ["exp_full_jitter", "exp_equal_jitter"])
def test_jitter_is_deterministic_with_a_seeded_random(name: str) -> None:
    p = policy(name, base=1, cap=1000)
    first = [retry_delay(p, n, rand=random.Random(42).random) for n in range(1, 11)]
    again = [retry_delay(p, n, rand=random.Random(42).random) for n in range(1, 11)]
    assert first == again
    for n, delay in enumerate(first, start=1):
        ceiling = min(1000.0, 2.0 ** (n - 1))
        low = 0.0 if name == "exp_full_jitter" else ceiling / 2
        assert low <= delay <= ceiling


def test_only_jittered_policies_draw_randomness() -> None:
    def no_draw() -> float:
        raise AssertionError("drew a random number")

    for name in ("fixed", "linear", "exponential"):
        retry_delay(policy(name), 3, rand=no_draw)


def test_backoff_ms_is_whole_milliseconds() -> None:
    assert backoff_ms(policy("linear", base=0.0015), 1) == 1
    assert backoff_ms(policy("exponential"), 3) == 20_000
    assert backoff_ms(policy("exp_full_jitter"), 2, rand=lambda: 0.25) == 2_500
