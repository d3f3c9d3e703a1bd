"""The hot path's tallies (``metrics.add``/``observe``/``track_depth``) reach
prometheus_client at ``flush`` exactly as direct calls would have."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from codeqd import metrics

BUCKETS = (0.001, 0.01, 0.1, 1, 10)
VALUES = [0.0, 0.0005, 0.001, 0.0010001, 0.05, 0.1, 3, 10, 11, 1e9]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample but the ``_created`` timestamps."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_flushed_tallies_equal_direct_calls() -> None:
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    h_direct = Histogram("h", "h", ["route"], buckets=BUCKETS, registry=direct)
    c_direct = Counter("c", "c", ["kind"], registry=direct)
    h_tallied = Histogram("h", "h", ["route"], buckets=BUCKETS, registry=tallied)
    c_tallied = Counter("c", "c", ["kind"], registry=tallied)
    for v in VALUES:
        h_direct.labels("/a").observe(v)
        metrics.observe(h_tallied, v, "/a")
    for kind, n in (("x", 1), ("y", 2), ("x", 3)):
        c_direct.labels(kind).inc(n)
        metrics.add(c_tallied, kind, amount=n)
    assert samples(tallied) != samples(direct)  # nothing until the flush
    metrics.flush()
    assert samples(tallied) == samples(direct)
    metrics.flush()  # a flush hands each tally over once
    assert samples(tallied) == samples(direct)


class _Box:
    def __init__(self, n: int) -> None:
        self.n = n

    def pending(self) -> int:
        return self.n


def test_inbox_depth_is_the_sum_of_the_actors_inboxes_at_flush() -> None:
    a, b = _Box(3), _Box(4)
    metrics.track_depth("test-actor", a)
    metrics.track_depth("test-actor", b)
    metrics.flush()
    assert metrics.INBOX_DEPTH.labels("test-actor")._value.get() == 7
    del b  # forgotten once garbage
    a.n = 1
    metrics.flush()
    assert metrics.INBOX_DEPTH.labels("test-actor")._value.get() == 1


def test_observations_are_handed_over_when_many_wait_without_a_flush() -> None:
    registry = CollectorRegistry()
    h = Histogram("many", "many", buckets=BUCKETS, registry=registry)
    metrics.flush()
    for _ in range(metrics._MAX_PENDING):
        metrics.observe(h, 0.5)
    assert samples(registry)[("many_count", ())] == metrics._MAX_PENDING  # no flush needed
    assert not any(key[0] is h for key in metrics._observed)
