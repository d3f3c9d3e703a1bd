"""No request answers 5xx after it changed the store (issue: a create with
``runAt: 9999-12-31T23:59:59-14:00`` was stored, then answered 500).

Property-based over create and batch-create bodies with extreme values: dates of
every year and offset, huge or negative delays and counts, integers past 64 bits,
unicode hosts. Every answer is below 500; a refused single create leaves the store
exactly as it was; an accepted one can be read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RedisServer
from tests.integration.auth.live import LiveServer, live_fixture  # noqa: F401 - provides `live`

PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {live.tokens['producer']}"
        yield c


def snapshot(redis: RedisServer) -> tuple[int, int, int]:
    """What a create writes: keys, task records and payloads."""
    return (
        redis.integer("DBSIZE"),
        redis.integer("HLEN", "codeq:{codeq:0}:task"),
        redis.integer("HLEN", "codeq:{codeq:0}:payload"),
    )


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    year = draw(st.integers(1, 9999))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    clock = f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:59"
    minutes = draw(st.integers(-14 * 60, 14 * 60))
    sign = "-" if minutes < 0 else "+"
    zone = draw(st.sampled_from(["Z", f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"]))
    return f"{year:04d}-{month:02d}-{day:02d}T{clock}{zone}"


big_ints = st.integers(-(2**80), 2**80)
numbers = big_ints | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 10)
payloads = st.recursive(
    st.booleans() | big_ints | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
hosts = st.sampled_from(
    ["example.com", "☃.example", "bücher.example", "xn--n3h.example", "a" * 300, "[::1]", "::1"]
)
FIELDS = {
    "priority": numbers,
    "maxAttempts": numbers,
    "delaySeconds": numbers,
    "runAt": timestamps() | st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00Z"]),
    "webhook": st.builds(lambda h, p: f"http://{h}:{p}/cb", hosts, st.integers(0, 70000)),
    "idempotencyKey": st.text(max_size=20),
}
# Many queues: every example may name a new command (the claim below walks them all).
commands = st.sampled_from(["p", "q.x"]) | st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True)
creates = st.fixed_dictionaries({"command": commands, "payload": payloads}, optional=FIELDS)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # the stdlib writes integers of any size


@PROPERTY
@given(body=creates)
def test_create_never_5xx_and_refusals_write_nothing(
    live: LiveServer, redis_server: RedisServer, client: httpx.Client, body: dict[str, Any]
) -> None:
    before = snapshot(redis_server)
    r = client.post(
        "/v1/codeq/tasks", content=dumps(body), headers={"Content-Type": "application/json"}
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["code"] and r.json()["error"], r.text
        assert snapshot(redis_server) == before, f"refused ({r.text}) but the store changed"
        return
    assert r.status_code == 202, r.text
    task = r.json()
    got = client.get(f"/v1/codeq/tasks/{task['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["payload"] == body["payload"]


@PROPERTY
@given(items=st.lists(creates, min_size=1, max_size=5))
def test_batch_create_never_5xx(
    live: LiveServer, client: httpx.Client, items: list[dict[str, Any]]
) -> None:
    r = client.post(
        "/v1/codeq/tasks/batch",
        content=dumps({"tasks": items}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code < 500, r.text
    if r.status_code == 202:
        out = r.json()["tasks"]
        assert len(out) == len(items)
        for item in out:
            assert "id" in item or item["code"], item


@PROPERTY
@given(items=st.lists(creates, min_size=1, max_size=20), max_tasks=st.integers(1, 1000))
def test_claims_over_many_queues_never_5xx(
    live: LiveServer, client: httpx.Client, items: list[dict[str, Any]], max_tasks: int
) -> None:
    """After any creates, a wildcard batch claim (the worst one) answers below 500."""
    client.post(
        "/v1/codeq/tasks/batch",
        content=dumps({"tasks": items}),
        headers={"Content-Type": "application/json"},
    )
    worker = {"Authorization": f"Bearer {live.tokens['worker']}"}
    r = client.post("/v1/codeq/tasks/claim/batch", json={"maxTasks": max_tasks}, headers=worker)
    assert r.status_code == 200, r.text
    assert len(r.json()["tasks"]) <= max_tasks


@pytest.mark.parametrize(
    "field,value",
    [
        ("runAt", "9999-12-31T23:59:59-14:00"),
        ("runAt", "2999-01-01T00:00:00Z"),
        ("delaySeconds", 10**12),
        ("maxAttempts", 10**6),
        ("priority", 10),
    ],
)
def test_out_of_range_values_are_400_naming_the_field(
    live: LiveServer, redis_server: RedisServer, client: httpx.Client, field: str, value: Any
) -> None:
    before = snapshot(redis_server)
    for idem in (None, f"k-{field}-{value}"):
        body = {"command": "p", "payload": {}, field: value}
        if idem:
            body["idempotencyKey"] = idem
        r = client.post("/v1/codeq/tasks", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["details"]["field"] == field
        r = client.post("/v1/codeq/tasks/batch", json={"tasks": [body]})
        assert r.status_code == 202 and r.json()["tasks"][0]["details"]["field"] == field
    assert snapshot(redis_server) == before


def test_integers_past_64_bits_are_refused_not_rounded(
    live: LiveServer, redis_server: RedisServer, client: httpx.Client
) -> None:
    before = snapshot(redis_server)
    raw = b'{"command":"p","payload":{"n":123456789012345678901234567890}}'
    r = client.post("/v1/codeq/tasks", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "64" in r.json()["error"]
    assert snapshot(redis_server) == before
    # Within 64 bits (past 2^53) they are kept exactly, and digits inside strings are text.
    exact = b'{"command":"p","payload":{"n":18446744073709551615,"s":"123456789012345678901234"}}'
    r = client.post("/v1/codeq/tasks", content=exact, headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    assert b'"n":18446744073709551615' in r.content
    assert r.json()["payload"]["s"] == "123456789012345678901234"
