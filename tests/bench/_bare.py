"""The framework ceiling: a bare JSON endpoint served by hypercorn's trio worker.

``python -m tests.bench._bare PORT asgi|quart`` serves POST /echo (reads the
JSON body, answers a small JSON object) either as a raw ASGI app or as a
minimal Quart-Trio app, with the same hypercorn settings codeqd uses.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

_REPLY = orjson.dumps({"id": "01234567-89ab-7cde-8f01-23456789abcd", "status": "PENDING"})
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_REPLY)).encode())]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    orjson.loads(body or b"{}")
    await send({"type": "http.response.start", "status": 202, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _REPLY})


def quart_app() -> Any:
    from quart import Response, request
    from quart_trio import QuartTrio

    app = QuartTrio("bare")

    @app.post("/echo")
    async def echo() -> Response:
        orjson.loads(await request.get_data())
        return Response(_REPLY, status=202, content_type="application/json")

    return app


def main() -> None:
    port, kind = int(sys.argv[1]), sys.argv[2]
    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.keep_alive_timeout = 75
    app: Any = asgi_app if kind == "asgi" else quart_app()
    trio.run(serve, app, cfg)


if __name__ == "__main__":
    main()
