"""The requests every worker and producer makes per task, served without Quart.

``POST /tasks``, ``POST /tasks/claim``, a worker's reports on a task it holds
(``POST /tasks/{id}/result``, ``/heartbeat``, ``/nack``, ``/abandon``) and a producer's
reads (``GET /tasks/{id}``, ``GET /tasks/{id}/result``) are the single-task path every
codeQ client lives on. Quart's request, response and context machinery costs about as
much daemon CPU as codeqd's own work on them, so these are answered here, straight
from ASGI, by the same functions the Quart routes call (``producer.create``,
``read_task``, ``read_result``, ``worker.claim_one``, ``task_op``) after the same checks
(``deps.authorize``, ``_request.headers_size`` and ``parse_json_body``, the body limits)
and with the same record (``_request.record_request``). Any other request, and these
with ``actors.ingress.fast_routes = false``, goes to the Quart app unchanged.

What the Quart path does around a route, done the same here:

- the token is checked before the body is read; a request refused before its body was
  read has a small body (up to 64 KiB) read and dropped, a larger one closes the
  connection, so the next request on it is never mistaken for the rest of this body;
- a body past ``limits.body_bytes`` is 413 and one that stops arriving for
  ``request_timeout`` is 408, both closing the connection;
- a client that goes away during a long-poll claim or result wait ends it (the store
  gives back a task leased for it; see ``Store.claim``);
- a GET that carries a body (no client sends one) goes to Quart, which drains it;
- an error is ``{"error", "code", "details"}`` with its status and headers; anything
  unexpected is logged with its traceback and answered 500 without one.

``tests/integration/test_fast_routes.py`` sends the same requests, good and bad, to a
daemon with and without this path and requires the same answers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import orjson
import structlog
import trio
import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler)

from codeqd.auth import Principal
from codeqd.context import Context
from codeqd.domain.errors import CodeqError
from codeqd.http import producer, worker
from codeqd.http._request import (
    PREFIX,
    body_too_large,
    body_too_slow,
    headers_size,
    mimetype,
    parse_json_body,
    record_request,
    request_id,
)
from codeqd.http.deps import Audience, RateOperation, authorize

log = structlog.get_logger("codeqd.http")

ASGIApp = Callable[..., Awaitable[None]]

_DRAIN_LIMIT = 64 * 1024
_TASKS = f"{PREFIX}/tasks"
_CLAIM = f"{PREFIX}/tasks/claim"
_JSON = (b"content-type", b"application/json")


class _Headers(dict[str, str]):
    """A request's headers by lowercase name (the first of repeated ones, as werkzeug
    answers ``get``), looked up case-insensitively."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)


class _Gone(Exception):
    """The client went away: nothing is sent."""


class _Exchange:
    """One request on a fast route: its state from the headers to the logged answer."""

    __slots__ = ("body_read", "ctx", "gone", "headers", "principal", "receive", "scope", "send")

    def __init__(self, ctx: Context, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.ctx = ctx
        self.scope = scope
        self.receive = receive
        self.send = send
        self.headers = _Headers()
        self.principal: Principal | None = None
        self.body_read = False
        self.gone = False

    def _seen(self, principal: Principal) -> None:
        self.principal = principal

    async def run(self, rule: str, task_id: str | None = None, op: str = "") -> None:
        started = time.perf_counter()
        raw = self.scope["headers"]
        for name, value in raw:
            self.headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        rid = request_id(self.headers)
        ctx = self.ctx
        status, extra, body = 200, None, b""
        try:
            headers_size(raw, ctx.config.limits.header_bytes)
            if self.scope["method"] == "GET":
                assert task_id is not None
                body = orjson.dumps(await self._serve_read(op, task_id))
            elif task_id is not None:
                body = orjson.dumps(await self._serve_task_op(op, task_id))
            elif rule == _TASKS:
                created = await self._serve_create()
                status, body, task_id = 202, orjson.dumps(created), created.get("id")
            else:
                found = await self._serve_claim()
                if found is None:
                    status = 204
                else:
                    body, task_id = orjson.dumps(found), found.get("id")
        except _Gone:
            return
        except CodeqError as err:
            status, body, extra = err.status, orjson.dumps(err.body()), err.headers()
        except Exception:
            log.exception("http.unhandled_error", request_id=rid, route=rule)
            status = 500
            body = orjson.dumps(
                {
                    "error": f"internal error; see the server log for request id {rid}",
                    "code": "internal",
                    "details": {},
                }
            )
        headers = [(b"x-request-id", rid.encode())]
        if status != 204:
            headers += [_JSON, (b"content-length", str(len(body)).encode())]
        if extra:
            headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in extra.items()]
        if not self.body_read and not (extra and "Connection" in extra) and not await self._drain():
            headers.append((b"connection", b"close"))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
        record_request(self.scope["method"], rule, status, started, rid, self.principal, task_id)

    async def _authorized(
        self, audience: Audience, scope: str | None, rate: RateOperation | None = None
    ) -> Principal:
        return await authorize(
            self.ctx,
            self.headers.get("authorization"),
            audience,
            scope,
            rate=rate,
            seen=self._seen,
        )

    async def _json(self, *, allow_empty: bool) -> Any:
        return parse_json_body(
            await self._body(),
            mimetype(self.headers.get("content-type")),
            allow_empty=allow_empty,
        )

    async def _body(self) -> bytes:
        """The whole body within ``limits.body_bytes`` and ``request_timeout``."""
        self.body_read = True
        limit = self.ctx.config.limits.body_bytes
        length = self._length()
        if length is not None and length > limit:
            raise body_too_large(self.ctx)
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(float(self.ctx.config.actors.ingress.request_timeout)):
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise _Gone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise body_too_large(self.ctx)
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks)
        raise body_too_slow(self.ctx)

    def _length(self) -> int | None:
        """The declared Content-Length (the HTTP parser has checked its form)."""
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isascii() and value.isdigit() else None

    async def _drain(self) -> bool:
        """After an answer given before the body was read: read a small body so the
        connection can carry the next request; False when it must close instead."""
        length = self._length()
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        if not chunked and not length:
            return True
        if length is None or length > _DRAIN_LIMIT:
            return False
        try:
            await self._body()
        except _Gone:
            return True
        except CodeqError:
            return False
        return True

    async def _serve_create(self) -> dict[str, Any]:
        principal = await self._authorized("producer", None, "create")
        body = await self._json(allow_empty=False)
        return await producer.create(self.ctx, principal, body, self.headers)

    async def _serve_read(self, op: str, task_id: str) -> dict[str, Any]:
        principal = await self._authorized("any", None)
        if not op:
            return await producer.read_task(self.ctx, principal, task_id)
        wait = self._query("waitSeconds")
        found = await producer.read_result(self.ctx, principal, task_id, wait, self._while_parked)
        if found is None or self.gone:
            raise _Gone
        return found

    def _query(self, name: str) -> str | None:
        """A query parameter, parsed as werkzeug parses ``request.args`` (the first of
        repeated ones; invalid bytes stay percent-encoded)."""
        query = self.scope["query_string"].decode()
        for key, value in parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"):
            if key == name:
                return str(value)
        return None

    async def _serve_task_op(self, name: str, task_id: str) -> dict[str, Any]:
        op = worker.TASK_OPS[name]
        principal = await self._authorized("worker", op.scope)
        body = await self._json(allow_empty=op.empty_body_ok)
        return await worker.task_op(
            self.ctx, principal, name, task_id, body, self.headers.get("x-lease-id")
        )

    async def _serve_claim(self) -> dict[str, Any] | None:
        principal = await self._authorized("worker", "codeq:claim", "claim")
        body = await self._json(allow_empty=True)
        found = await worker.claim_one(self.ctx, principal, body, self._while_parked)
        if self.gone:
            raise _Gone
        return found

    @asynccontextmanager
    async def _while_parked(self) -> AsyncIterator[None]:
        """A parked request (a claim, a result wait) ends when its client goes away; a
        claim then gives back what it claimed."""
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, nursery.cancel_scope)
            try:
                yield
            except Exception as e:  # raised below, not as the nursery's ExceptionGroup
                error = e
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _watch(self, scope: trio.CancelScope) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        scope.cancel()


def _has_body(scope: dict[str, Any]) -> bool:
    return any(
        (name == b"content-length" and value != b"0") or name == b"transfer-encoding"
        for name, value in scope["headers"]
    )


def fast_routes(app: ASGIApp, ctx: Context) -> ASGIApp:
    """``app`` with the single-task routes answered here (see the module)."""
    tasks_prefix = _TASKS + "/"
    posts = {name: f"{_TASKS}/<task_id>/{name}" for name in worker.TASK_OPS}
    reads = {"": f"{_TASKS}/<task_id>", "result": f"{_TASKS}/<task_id>/result"}

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            if method == "POST":
                if path in (_TASKS, _CLAIM):
                    return await _Exchange(ctx, scope, receive, send).run(path)
                if path.startswith(tasks_prefix):
                    task_id, _, op = path[len(tasks_prefix) :].partition("/")
                    rule = posts.get(op)
                    if rule is not None and task_id:
                        return await _Exchange(ctx, scope, receive, send).run(rule, task_id, op)
            # A GET with a body (nothing sends one) goes to Quart, which drains it.
            elif method == "GET" and path.startswith(tasks_prefix) and not _has_body(scope):
                task_id, slash, op = path[len(tasks_prefix) :].partition("/")
                rule = reads.get(op)
                if rule is not None and task_id and (op or not slash):  # not ".../{id}/"
                    return await _Exchange(ctx, scope, receive, send).run(rule, task_id, op)
        return await app(scope, receive, send)

    return serve
