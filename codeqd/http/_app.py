"""The Quart-Trio app factory: routes, request ids, header and body limits, and the one
error mapper. What the routes share lives in ``_request`` (helpers) and ``_claiming``.

Every error a request can meet leaves here as ``{"error", "code", "details"}``
with the status of its ``CodeqError`` class; anything unexpected is logged with
its traceback and answered 500 without one. A WebSocket upgrade goes through the
same handlers: refused with 404 (no route) or 400 ``websocket_not_supported``
(an HTTP route), as a plain HTTP response; a ``@bp.websocket`` route would
simply match.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import structlog
import trio
from quart import Response, g, has_request_context, request, websocket
from quart.asgi import ASGIHTTPConnection
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing.exceptions import WebsocketMismatch

from codeqd import tracing
from codeqd.context import Context
from codeqd.domain.errors import BadRequest, CodeqError
from codeqd.http import (
    admin,
    batch,
    health,
    openapi,
    producer,
    streams,
    subscriptions,
    ui,
    worker,
)
from codeqd.http._errors import PayloadTooLarge
from codeqd.http._fast import fast_routes
from codeqd.http._request import (
    error_response,
    headers_size,
    json_response,
    record_request,
    request_id,
)

log = structlog.get_logger("codeqd.http")


_DRAIN_LIMIT = 64 * 1024


async def _drain_or_close(response: Response) -> None:
    """A request refused before its body was read (bad token, wrong route...) leaves the
    body on the connection, and hypercorn then never starts the next request on it
    (found by the fuzz tests: the client hangs). Read a small body; close otherwise."""
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return
    if length is not None and length <= _DRAIN_LIMIT and "Connection" not in response.headers:
        try:
            await request.get_data(cache=False)
            return
        except HTTPException:
            pass
    response.headers["Connection"] = "close"


class _Connection(TrioASGIHTTPConnection):
    """quart-trio cancels a request's nursery as soon as hypercorn reports the stream
    closed, which hypercorn does while the last body chunk is being sent and before it
    marks the keep-alive connection idle. That cancellation stops hypercorn from starting
    the connection's idle task, so an idle keep-alive connection was closed neither after
    ``keep_alive_timeout`` nor at shutdown (the drain then lasted the whole grace).
    Here a disconnect cancels the request only while no response is being sent; once it
    is, ``handle_request`` ends the nursery itself when the response is out."""

    _responding = False

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, receive: Any
    ) -> None:
        await ASGIHTTPConnection.handle_messages(self, request, receive)
        if not self._responding:
            nursery.cancel_scope.cancel()

    async def _send_response(self, send: Any, response: Any) -> None:
        self._responding = True
        await super()._send_response(send, response)


def _connection() -> Any:
    """The request, or the WebSocket handshake when the client asked for an upgrade."""
    return request if has_request_context() else websocket


def create_app(ctx: Context) -> QuartTrio:
    app = QuartTrio("codeqd")
    app.asgi_http_class = _Connection
    if ctx.config.tracing.enabled:
        # A child span per store step of a route (the server spans: below).
        ctx = dataclasses.replace(ctx, store=tracing.traced_store(ctx.store))
    app.codeqd = ctx  # type: ignore[attr-defined]
    if ctx.config.actors.ingress.fast_routes:
        # The per-task routes straight from ASGI (``_fast``).
        app.asgi_app = fast_routes(app.asgi_app, ctx)  # type: ignore[method-assign,assignment]
    if ctx.config.tracing.enabled:
        # A server span per request, the fast routes' too.
        app.asgi_app = tracing.asgi_middleware(app.asgi_app)  # type: ignore[method-assign,assignment]
    app.config["MAX_CONTENT_LENGTH"] = ctx.config.limits.body_bytes
    # A body that stops arriving gets 408 (json_body); hypercorn's read timeout is only a
    # backstop (see hypercorn_config).
    app.config["BODY_TIMEOUT"] = float(ctx.config.actors.ingress.request_timeout)
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    header_limit = ctx.config.limits.header_bytes
    for bp in (
        health.bp,
        producer.bp,
        worker.bp,
        admin.bp,
        batch.bp,
        subscriptions.bp,
        streams.bp,
        openapi.bp,
    ):
        app.register_blueprint(bp)
    if ctx.config.ui.enabled:
        app.register_blueprint(ui.bp)

    @app.before_request
    async def _start() -> None:
        g.request_id = request_id(request.headers)
        g.started = time.perf_counter()
        g.principal = None
        g.task_id = request.view_args.get("task_id") if request.view_args else None
        headers_size(request.headers.items(), header_limit)

    @app.after_request
    async def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if not g.get("body_read"):
            await _drain_or_close(response)
        record_request(
            request.method,
            request.url_rule.rule if request.url_rule else "unmatched",
            response.status_code,
            g.get("started", time.perf_counter()),
            g.get("request_id"),
            g.get("principal"),
            g.get("task_id"),
        )
        return response

    @app.before_websocket
    async def _start_websocket() -> None:
        g.request_id = request_id(websocket.headers)

    @app.after_websocket
    async def _finish_websocket(response: Any) -> Any:
        if response is not None:  # a refused handshake, answered over HTTP
            response.headers["X-Request-Id"] = g.get("request_id") or request_id(websocket.headers)
            # hypercorn ends the connection after a refused upgrade: say so, so that
            # no client sends its next request on it.
            response.headers["Connection"] = "close"
            log.info(
                "http.websocket_refused",
                route=websocket.url_rule.rule if websocket.url_rule else "unmatched",
                path=websocket.path,
                status=response.status_code,
                request_id=response.headers["X-Request-Id"],
            )
        return response

    @app.errorhandler(CodeqError)
    async def _codeq_error(err: CodeqError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    async def _http_error(err: HTTPException) -> Response:
        code = err.code or 500
        if isinstance(err, RequestEntityTooLarge):
            return error_response(
                PayloadTooLarge(f"request body larger than {ctx.config.limits.body_bytes} bytes")
            )
        conn = _connection()
        # An HTTP route asked for an upgrade: werkzeug says 405 (no WEBSOCKET method)
        # or WebsocketMismatch (400).
        if isinstance(err, WebsocketMismatch) and conn is not websocket:
            return error_response(
                BadRequest(
                    f"{conn.path} is a WebSocket: send a WebSocket upgrade",
                    code="websocket_required",
                )
            )
        if isinstance(err, WebsocketMismatch) or (conn is websocket and code == 405):
            return error_response(
                BadRequest(
                    f"{conn.path} does not accept a WebSocket upgrade",
                    code="websocket_not_supported",
                )
            )
        method = "WEBSOCKET" if conn is websocket else conn.method
        names = {404: "route_not_found", 405: "method_not_allowed"}
        message = {
            404: f"no route {method} {conn.path}",
            405: f"method {method} not allowed on {conn.path}",
        }
        return json_response(
            {
                "error": message.get(code, err.description or err.name),
                "code": names.get(code, "http_error"),
                "details": {},
            },
            code,
        )

    @app.errorhandler(Exception)
    async def _unexpected(err: Exception) -> Response:
        conn = _connection()
        log.exception(
            "http.unhandled_error",
            request_id=g.get("request_id"),
            route=conn.url_rule.rule if conn.url_rule else None,
        )
        return json_response(
            {
                "error": "internal error; see the server log for request id "
                f"{g.get('request_id', '')}",
                "code": "internal",
                "details": {},
            },
            500,
        )

    return app
