"""The client is the codeqd-client distribution (codeqd_client); the daemon's names for
it (codeqd.client, codeqd.worker, codeqd.webhooks, `codeqd worker`) are the same objects."""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

import codeqd._worker_cli
import codeqd.client
import codeqd.webhooks
import codeqd.worker
import codeqd_client
import codeqd_client.webhooks
import codeqd_client.worker
from codeqd import cli
from codeqd_client import _json, _worker_cli


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (codeqd.client, codeqd_client),
        (codeqd.worker, codeqd_client.worker),
        (codeqd.webhooks, codeqd_client.webhooks),
    ],
)
def test_the_daemon_re_exports_the_client(old: object, new: object) -> None:
    public = [n for n in new.__all__ if n != "__version__"]  # type: ignore[attr-defined]
    assert set(public) <= set(old.__all__)  # type: ignore[attr-defined]
    for name in old.__all__:  # type: ignore[attr-defined]
        assert getattr(old, name) is getattr(new, name), name


def test_codeqd_worker_is_the_clients_shell_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert codeqd._worker_cli.cmd_worker is _worker_cli.cmd_worker
    monkeypatch.delenv("CODEQD_TOKEN", raising=False)
    assert cli.main(["worker", "--", "true"]) == 2
    assert _worker_cli.main(["--", "true"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(";")[0] for line in err] == [
        "codeqd worker: no token",
        "codeqd-worker: no token",
    ]


def test_json_is_compact_utf8_and_refuses_nan() -> None:
    class Colour(enum.Enum):
        RED = "red"

    @dataclass
    class Point:
        x: int

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    doc = {"a": [1, "é"], "t": when, "u": uuid.UUID(int=1), "c": Colour.RED, "p": Point(2)}
    assert (
        _json.dumps(doc)
        == (
            '{"a":[1,"é"],"t":"2026-01-02T03:04:05+00:00",'
            '"u":"00000000-0000-0000-0000-000000000001","c":"red","p":{"x":2}}'
        ).encode()
    )
    assert _json.loads(_json.dumps(doc))["a"] == [1, "é"]
    with pytest.raises(ValueError):
        _json.dumps({"x": math.nan})
    with pytest.raises(TypeError):
        _json.dumps({"x": object()})
    with pytest.raises(TypeError, match="not JSON"):
        codeqd_client.worker.result_object({"x": math.inf})  # nacked, never sent as null
