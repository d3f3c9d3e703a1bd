"""A real JWKS server on 127.0.0.1 (raw trio HTTP/1.1), signing keys generated per test,
and the API served with ``auth.mode = "jwt"`` against it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from codeqd import config as cfgmod
from tests.integration.conftest import Api, make_config, start_api

ISSUER = "https://idp.test"
PRODUCER_AUD = "codeq-producer"
WORKER_AUD = "codeq-worker"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        algo = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[self.alg]
        out: dict[str, Any] = algo.to_jwk(self.private.public_key(), as_dict=True)  # type: ignore[attr-defined]
        return {**out, "kid": self.kid, "use": "sig", "alg": self.alg}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers}
        )


_RSA: dict[str, rsa.RSAPrivateKey] = {}


def new_key(kid: str, alg: str = "RS256") -> SigningKey:
    if alg == "RS256":
        # RSA generation costs ~50 ms: one key per kid for the whole session.
        if kid not in _RSA:
            _RSA[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private: Any = _RSA[kid]
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid, alg, private)


def claims(
    role: str = "producer", *, sub: str = "p-1", tenant: str = "acme", ttl: int = 600, **extra: Any
) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "sub": sub,
        "iss": ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "tenantId": tenant,
    }
    if role == "worker":
        out.update(
            aud=[WORKER_AUD],
            eventTypes=["*"],
            scope="codeq:claim codeq:heartbeat codeq:abandon codeq:nack codeq:result "
            "codeq:subscribe",
        )
    else:
        out["aud"] = [PRODUCER_AUD]
        if role == "admin":
            out["role"] = "ADMIN"
    out.update(extra)
    return out


class JwksServer:
    """Serves ``{"keys": [...]}`` from ``keys``; ``fail`` answers 500; counts ``hits``."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.hits = 0
        self.fail = False
        self.url = ""

    async def _handle(self, stream: trio.SocketStream) -> None:
        data = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
        self.hits += 1
        status, body = (
            ("500 Internal Server Error", b"{}")
            if self.fail
            else ("200 OK", orjson.dumps({"keys": [k.jwk for k in self.keys]}))
        )
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            await stream.send_all(head.encode() + body)
        finally:
            await stream.aclose()

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"


@pytest.fixture
async def jwks(nursery: trio.Nursery) -> JwksServer:
    server = JwksServer()
    server.keys = [new_key("k1")]
    await server.start(nursery)
    return server


def jwt_config(tmp_path: Path, jwks: JwksServer, **provider: Any) -> cfgmod.Config:
    prov = {
        "provider": "jwks",
        "jwks_url": jwks.url,
        "issuer": ISSUER,
        "jwks_refresh_cooldown": "30s",
        **provider,
    }
    return make_config(
        tmp_path,
        auth={
            "mode": "jwt",
            "producer": {**prov, "audience": PRODUCER_AUD},
            "worker": {**prov, "audience": WORKER_AUD},
        },
    )


@asynccontextmanager
async def serving(
    nursery: trio.Nursery, config: cfgmod.Config, redis_url: str
) -> AsyncIterator[Api]:
    """``start_api`` as a context manager: the server shuts down in this task even when
    the body fails (an abandoned async generator would be finalized elsewhere)."""
    agen = start_api(nursery, config, redis_url)
    try:
        yield await agen.__anext__()
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await agen.__anext__()
