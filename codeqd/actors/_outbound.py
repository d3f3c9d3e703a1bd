"""What the dispatcher and the notifier share: the outbound HTTP client, signed POSTs,
the destination guard (``webhooks.deny_private_networks``) and the delivery counter.
(Their wake-up hints come from the store's pub/sub listener, ``codeqd.store._wakeups``.)

The client follows no redirects (a 3xx is a failed attempt), ignores proxy settings
from the environment, and reads at most ``MAX_RESPONSE_BYTES`` of a response. With
the guard on, every connection resolves the host itself and connects to the checked
address, so a DNS answer cannot change between the check and the connect.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import structlog
import trio

from codeqd import metrics, webhooks
from codeqd._version import __version__
from codeqd.config import WebhooksConfig

log = structlog.get_logger("codeqd.webhooks")

MAX_RESPONSE_BYTES = 4096
USER_AGENT = f"codeqd/{__version__}"

DELIVERIES = metrics.WEBHOOK_DELIVERIES


# ---------------------------------------------------------------- destination guard


class ForbiddenDestination(httpcore.ConnectError):
    """The destination resolves to an address ``deny_private_networks`` refuses."""


def forbidden_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, refuses private/loopback/link-local answers, connects to the checked IP."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
        ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not ips:
            raise ForbiddenDestination(f"{host} does not resolve")
        bad = [ip for ip in ips if forbidden_address(ip)]
        if bad:
            raise ForbiddenDestination(
                f"destination {host} resolves to {bad[0]}, a private, loopback or link-local "
                "address (refused: webhooks.deny_private_networks = true)"
            )
        return await self.inner.connect_tcp(
            ips[0],
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenDestination("unix sockets are not webhook destinations")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, limits: httpx.Limits, verify: Any) -> None:
        super().__init__(limits=limits, trust_env=False, verify=verify)
        from httpcore._backends.trio import TrioBackend

        # httpx has no public hook for the network backend; its pool takes one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._pool._ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(TrioBackend()),
        )


#: Requests in flight per client: httpcore's pool does O(requests x connections) work
#: on every request, so many small pools beat one large one (measured: 64 concurrent
#: requests through one client cost ~4 ms of CPU each).
REQUESTS_PER_CLIENT = 8


class Clients:
    """Pooled clients handed out by slot: at most ``REQUESTS_PER_CLIENT`` requests use
    one client at a time. ``slot()`` is a context manager taking a free slot."""

    def __init__(self, config: WebhooksConfig) -> None:
        self.config = config
        self._ssl = httpx.create_ssl_context(trust_env=False)  # ~70 ms each: share one
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._free: list[int] = []
        self._next = 0

    def _make(self) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=REQUESTS_PER_CLIENT,
            max_keepalive_connections=REQUESTS_PER_CLIENT,
            keepalive_expiry=30,
        )
        transport: httpx.AsyncHTTPTransport
        if self.config.deny_private_networks:
            transport = _GuardedTransport(limits=limits, verify=self._ssl)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False, verify=self._ssl)
        return httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )

    @contextmanager
    def slot(self) -> Iterator[httpx.AsyncClient]:
        slot = self._free.pop() if self._free else self._next
        if slot == self._next:
            self._next += 1
        index = slot // REQUESTS_PER_CLIENT
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._make()
        try:
            yield client
        finally:
            self._free.append(slot)

    async def aclose(self) -> None:
        for client in self._clients.values():
            with trio.CancelScope(shield=True):
                await client.aclose()
        self._clients.clear()


@asynccontextmanager
async def open_clients(config: WebhooksConfig) -> AsyncIterator[Clients]:
    """The actor's clients for its lifetime (connections are reused per host)."""
    clients = Clients(config)
    try:
        yield clients
    finally:
        await clients.aclose()


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if secret:
        headers.update(webhooks.sign(secret, body))
    return headers


async def post(
    clients: Clients,
    url: str,
    body: bytes,
    secret: str,
    timeout: float,
    extra_headers: dict[str, str] | None = None,
) -> Attempt:
    """POST ``body`` signed; never raises: whatever goes wrong with this one request (a
    refused destination, a URL httpx cannot parse, DNS, TLS, a bug below us) is a failed
    ``Attempt`` with the error, so one bad record cannot take its actor down.

    The whole exchange (connect, send, response headers, up to ``MAX_RESPONSE_BYTES``
    of body) is bounded by ``timeout``. Cancellation from outside propagates.
    """
    started = time.perf_counter()
    status: int | None = None
    error = ""
    with trio.move_on_after(timeout) as scope, clients.slot() as client:
        try:
            async with client.stream(
                "POST",
                url,
                content=body,
                headers={**signed_headers(secret, body), **(extra_headers or {})},
                timeout=timeout,
            ) as response:
                status = response.status_code
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
        except ForbiddenDestination as e:
            error = str(e)
        except httpx.HTTPError as e:
            cause = e.__cause__ if isinstance(e.__cause__, ForbiddenDestination) else e
            error = f"{type(e).__name__}: {cause}" if str(cause) else type(e).__name__
        except Exception as e:  # httpx.InvalidURL is no HTTPError; OSError, idna errors
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    duration = round((time.perf_counter() - started) * 1000, 2)
    if scope.cancelled_caught and status is None:
        error = f"timed out after {timeout:g}s"
    if status is not None and not 200 <= status < 300 and not error:
        error = f"HTTP {status}"
    return Attempt(status, error, duration)


def host_of(url: Any) -> str:
    """For logs: the destination without path or query (which may carry secrets)."""
    try:
        return str(urlsplit(url).netloc).rsplit("@", 1)[-1]
    except Exception:  # a non-string or unparsable value from a poison record
        return "?"


def resolve_secret(config: WebhooksConfig) -> str:
    if not config.hmac_secret:
        log.warning(
            "webhooks.unsigned",
            reason="webhooks.hmac_secret is empty; callbacks are sent without X-CodeQ-Signature",
        )
    return config.hmac_secret
