"""codeqd.webhooks.sign/verify, and outbound safety (URL checks, private destinations)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import trio

import codeqd
from codeqd.actors._outbound import forbidden_address
from codeqd.config import WebhooksConfig
from tests.integration.conftest import Api, make_config, start_api
from tests.integration.webhooks._receiver import Receiver
from tests.integration.webhooks.conftest import SECRET, start_dispatcher
from tests.integration.webhooks.test_result_callbacks import eventually, finish, task_of


def test_sign_then_verify_round_trip() -> None:
    body = b'{"taskId":"t"}'
    headers = codeqd.webhooks.sign("s3cret", body, now=1_700_000_000)
    ts, sig = headers["X-CodeQ-Timestamp"], headers["X-CodeQ-Signature"]
    assert ts == "1700000000" and len(sig) == 64
    verify = codeqd.webhooks.verify
    assert verify("s3cret", body, ts, sig, now=1_700_000_100)
    assert verify("s3cret", body.decode(), int(ts), sig.upper(), now=1_700_000_000)
    assert not verify("s3cret", body + b" ", ts, sig, now=1_700_000_000)
    assert not verify("other", body, ts, sig, now=1_700_000_000)
    assert not verify("s3cret", body, ts, sig, now=1_700_000_301)  # stale
    assert not verify("s3cret", body, ts, sig, now=1_699_999_699)  # from the future
    assert verify("s3cret", body, ts, sig, tolerance=1000, now=1_700_000_900)
    assert not verify("s3cret", body, "abc", sig, now=1_700_000_000)
    assert not verify("s3cret", body, None, sig)
    assert not verify("s3cret", body, ts, None)
    assert not verify("", body, ts, sig)


def test_private_addresses_are_recognised() -> None:
    for ip in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.5",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ):
        assert forbidden_address(ip), ip
    for ip in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert not forbidden_address(ip), ip


BAD_URLS = (
    "ftp://x/y",
    "http://",
    "example.com/cb",
    "http://exa mple.com/",
    "https://" + "a" * 2040 + ".com/",
    "http://host:99999/",
    "http://host:0/",
    "http://\u2603.example/x",  # IDNA-invalid: httpx.InvalidURL at send time
    "http://xn--n3h.example/x",  # the same host, already punycoded
    "http://" + "a" * 64 + ".example/",  # a label over 63
    "http://" + ".".join(["a" * 60] * 5) + "/",  # a host over 253
    "http://a..b/",
    "http://%41.example/",
    "http://[zz]/",
    "http://host\x00/",
    "http://host/\x85",
    42,
)


async def test_task_webhook_url_is_validated(api: Api) -> None:
    for bad in BAD_URLS:
        r = await api.call(
            "POST", "/tasks", api.producer, {"command": "email", "payload": {}, "webhook": bad}
        )
        assert r.status_code == 400, bad
        assert r.json()["code"] == "validation_error"
        assert r.json()["details"]["field"] == "webhook"
        assert r.json()["error"].startswith("webhook: ")
    r = await api.call(
        "POST",
        "/tasks/batch",
        api.producer,
        {"tasks": [{"command": "email", "payload": {}, "webhook": "http://\u2603.example/x"}]},
    )
    assert r.status_code == 202, r.text
    (item,) = r.json()["tasks"]
    assert item["code"] == "validation_error" and item["details"]["field"] == "webhook"
    r = await api.call("GET", "/admin/queues/email", api.admin)
    assert r.json()["ready"] == 0  # nothing stored
    ok = await api.create("email", {}, webhook="HTTPS://example.com:8443/cb?x=1")
    assert ok["webhook"] == "HTTPS://example.com:8443/cb?x=1"
    idna = await api.create("email", {}, webhook="http://b\u00fccher.example/cb")
    assert idna["webhook"] == "http://b\u00fccher.example/cb"
    v6 = await api.create("email", {}, webhook="http://[2001:db8::1]:8080/cb")
    assert v6["webhook"] == "http://[2001:db8::1]:8080/cb"


async def test_subscription_callback_url_is_validated(api: Api) -> None:
    for bad in BAD_URLS:
        r = await api.call("POST", "/workers/subscriptions", api.worker, {"callbackUrl": bad})
        assert r.status_code == 400, bad
        assert r.json()["details"]["field"] == "callbackUrl"
        assert r.json()["error"].startswith("callbackUrl: ")
    r = await api.call(
        "POST",
        "/workers/subscriptions",
        api.worker,
        {"callbackUrl": "http://b\u00fccher.example/n"},
    )
    assert r.status_code == 200, r.text


def test_signature_is_hmac_sha256_of_timestamp_dot_raw_body_independently() -> None:
    """The wire format, computed here with hmac/hashlib, against what we sign."""
    body = '{"taskId":"t-\u00e9","n":1}'.encode()
    headers = codeqd.webhooks.sign("s3cret", body, now=1_700_000_000)
    want = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers == {"X-CodeQ-Timestamp": "1700000000", "X-CodeQ-Signature": want}


async def test_callback_signature_checks_out_independently(api: Api, nursery: trio.Nursery) -> None:
    """HMAC-SHA256 of ``timestamp + "." + body`` over the raw bytes the receiver got,
    computed with hmac/hashlib (not codeqd.webhooks.verify)."""
    receiver = await Receiver(200).start(nursery)
    await start_dispatcher(nursery, api.ctx)
    task = await finish(api, receiver.url)
    (req,) = await receiver.wait_for(1)
    ts = req.headers["x-codeq-timestamp"]
    assert ts.isdigit() and abs(int(ts) - time.time()) < 10
    want = hmac.new(SECRET.encode(), ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-codeq-signature"], want)
    assert orjson.loads(req.body)["taskId"] == task["id"]
    tampered = hmac.new(SECRET.encode(), ts.encode() + b"." + req.body + b" ", hashlib.sha256)
    assert req.headers["x-codeq-signature"] != tampered.hexdigest()


@pytest.fixture
async def default_api(nursery: trio.Nursery, tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """The API with the default ``[webhooks]`` (deny_private_networks = true)."""
    async for api in start_api(nursery, make_config(tmp_path), redis_url):
        yield api


async def test_private_destinations_refused_by_default(
    default_api: Api, nursery: trio.Nursery
) -> None:
    """With the defaults a 127.0.0.1 receiver is accepted at the door (DNS decides what a
    name resolves to only at send time) and every attempt fails with an error naming the
    setting; the task's callback ends FAILED, nothing crashes, nothing reaches it."""
    api = default_api
    receiver = await Receiver().start(nursery)
    await start_dispatcher(nursery, api.ctx, max_attempts=2)
    task = await finish(api, receiver.url)
    localhost = await finish(api, receiver.url.replace("127.0.0.1", "localhost"))

    async def failed() -> bool:
        return all(
            [
                (await task_of(api, t["id"])).get("webhookStatus") == "FAILED"
                for t in (task, localhost)
            ]
        )

    await eventually(failed)
    for t in (task, localhost):
        got = await task_of(api, t["id"])
        assert got["webhookAttempts"] == 2
        assert "private, loopback or link-local" in got["webhookError"]
        assert "deny_private_networks" in got["webhookError"]
    assert receiver.requests == []


def test_webhooks_config_defaults() -> None:
    cfg = WebhooksConfig()
    assert cfg.deny_private_networks is True and cfg.hmac_secret == ""
    assert (cfg.subscription_max_per_worker, cfg.subscription_max_per_tenant) == (100, 1000)
