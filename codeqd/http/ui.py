"""The operator's dashboard (SPEC §7): server-rendered pages under ``/ui/`` for admins.

Login takes an admin token once and keeps a signed session cookie (``_ui_session``);
every change is a POST carrying the session's CSRF token; pages are served with a
strict Content-Security-Policy (scripts and styles only from ``/ui/static``, none
inline). Templates and static files live in ``codeqd/ui/``.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec

import orjson
import structlog
from quart import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from codeqd.domain.artifacts import download_headers, is_stored_name
from codeqd.domain.errors import (
    BadRequest,
    CodeqError,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationError,
)
from codeqd.domain.task import (
    MAX_IDEMPOTENCY_KEY_LEN,
    check_command,
    rfc3339,
    synthesized_result,
    task_to_wire,
)
from codeqd.http._request import PREFIX, app_context, error_response, json_response
from codeqd.http._ui_session import (
    COOKIE,
    Session,
    Sessions,
    load_or_create_secret,
    read_dev_login_ticket,
)
from codeqd.http._ui_timeline import task_timeline
from codeqd.store import QUEUE_STATES, RATE_SERIES, RATES_MAX_MINUTES

log = structlog.get_logger("codeqd.ui")

_HERE = Path(__file__).resolve().parent.parent / "ui"
bp = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder=str(_HERE / "templates"),
    static_folder=str(_HERE / "static"),
    static_url_path="/static",
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_SIZE = 50
#: The overview's rates: the last hour, per minute.
RATES_MINUTES = 60
#: "Replay all" replays at most this many per click; replay and purge of the oldest
#: dead tasks go in store calls of _DLQ_STEP.
REPLAY_ALL_MAX = 100_000
_DLQ_STEP = 1000
#: Messages a redirect may ask a page to show, by code: never text from the request.
MESSAGES = {
    "paused": "Queue paused: it accepts tasks but hands none out.",
    "resumed": "Queue resumed.",
    "replayed": "Dead tasks replayed.",
    "purged": "Dead tasks purged.",
    "cancelled": "Task cancelled.",
    "nothing": "Nothing was selected.",
}

P = ParamSpec("P")


def _sessions() -> Sessions:
    found: Sessions | None = current_app.config.get("CODEQD_UI_SESSIONS")
    if found is None:
        found = current_app.config["CODEQD_UI_SESSIONS"] = Sessions(
            load_or_create_secret(app_context().config)
        )
    return found


def _session() -> Session | None:
    return _sessions().read(request.cookies.get(COOKIE), time.time())


def _login_redirect() -> Response:
    return redirect(url_for("ui.login_page"), 303)  # type: ignore[return-value]


async def _form() -> MultiDict[str, str]:
    g.body_read = True
    return await request.form


def page(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A GET page: the session is the first argument; no session → the login page."""

    @wraps(fn)
    async def route(*args: Any, **kwargs: Any) -> Any:
        session = _session()
        if session is None:
            return _login_redirect()
        g.ui_session = session
        return await fn(session, *args, **kwargs)

    return route


def action(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A POST that changes something: a session and its CSRF token (form field ``csrf``)
    are required; the form is the second argument."""

    @wraps(fn)
    async def route(*args: Any, **kwargs: Any) -> Any:
        session = _session()
        form = await _form()
        if session is None:
            raise Unauthorized("not logged in to the dashboard", code="ui_login_required")
        if not _sessions().csrf_ok(session, form.get("csrf")):
            raise Forbidden("missing or wrong CSRF token; reload the page", code="csrf_failed")
        g.ui_session = session
        return await fn(session, form, *args, **kwargs)

    return route


def _tenant(session: Session, raw: str | None) -> str | None:
    """The tenant a page acts on: a tenant admin's own (naming another is 403); an
    admin of every tenant names it (None until they have picked one)."""
    raw = (raw or "").strip()
    if session.all_tenants:
        if not raw:
            return None
        if len(raw) > 128 or raw == "*":
            raise ValidationError("tenant", "expected a tenant id of at most 128 characters")
        return raw
    if raw and raw != session.tenant:
        raise Forbidden("this admin token may only see its own tenant")
    return session.tenant


def _required_tenant(session: Session, raw: str | None) -> str:
    tenant = _tenant(session, raw)
    if tenant is None:
        raise ValidationError("tenant", "pick a tenant first")
    return tenant


async def _render(template: str, status: int = 200, **context: Any) -> Response:
    session: Session | None = g.get("ui_session")
    context.setdefault("tenant", None)
    msg = request.args.get("msg", "")
    body = await render_template(
        template,
        session=session,
        csrf=_sessions().csrf_token(session) if session else "",
        refresh_ms=int(float(app_context().config.ui.refresh_interval) * 1000),
        message=MESSAGES.get(msg, ""),
        **context,
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _back(endpoint: str, tenant: str, msg: str, **values: Any) -> Response:
    url = url_for(endpoint, tenant=tenant, msg=msg, **values)
    return redirect(url, 303)  # type: ignore[return-value]


@bp.after_request
async def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/ui/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(CodeqError)
async def _error(err: CodeqError) -> Response:
    if g.get("ui_json"):
        return error_response(err)
    if isinstance(err, Unauthorized):
        g.ui_session = None
    response = await _render("ui/error.html", err.status, error=err)
    return response


# ------------------------------------------------------------------ login


@bp.get("/login")
async def login_page() -> Response:
    return await _render("ui/login.html")


@bp.post("/login")
async def login() -> Response:
    """Verify an admin token (never logged, never stored) and set the session cookie."""
    form = await _form()
    token = (form.get("token") or "").strip()
    ctx = app_context()
    try:
        principal = await ctx.auth.authenticate(f"Bearer {token}", "producer")
    except (Unauthorized, Forbidden) as e:
        log.info("ui.login_refused", code=e.code, request_id=g.get("request_id"))
        return await _render("ui/login.html", 401, error=e.message)
    if not principal.is_admin:
        log.info("ui.login_refused", code="not_admin", request_id=g.get("request_id"))
        return await _render(
            "ui/login.html", 403, error="this token is not an admin token (role ADMIN)"
        )
    exp = principal.claims.get("exp")
    return _start_session(principal.sub, principal.tenant, exp)


def _start_session(sub: str, tenant: str, token_exp: Any) -> Response:
    now = time.time()
    expires = int(now + float(app_context().config.ui.session_ttl))
    if isinstance(token_exp, int | float):
        expires = min(expires, int(token_exp))
    _, value = _sessions().issue(sub, tenant, expires)
    log.info("ui.login", sub=sub, tenant=tenant, expires=expires)
    response: Response = redirect(url_for("ui.overview"), 303)  # type: ignore[assignment]
    response.set_cookie(
        COOKIE,
        value,
        max_age=max(1, expires - int(now)),
        path="/ui",
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
    )
    return response


@bp.post("/logout")
@action
async def logout(session: Session, form: MultiDict[str, str]) -> Response:
    del form
    log.info("ui.logout", sub=session.sub, tenant=session.tenant)
    response = _login_redirect()
    response.delete_cookie(COOKIE, path="/ui")
    return response


def _loopback() -> bool:
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/login/dev")
async def dev_login() -> Response:
    """``codeqd ui-token``'s one-click link: dev mode and a loopback client only."""
    if app_context().config.auth.mode != "dev" or not _loopback():
        raise Forbidden("one-click login works only in dev mode, from this machine")
    found = read_dev_login_ticket(_sessions().secret, request.args.get("ticket", ""))
    if found is None:
        raise Unauthorized(
            "this login link is invalid or expired: run `codeqd ui-token` again",
            code="invalid_ticket",
        )
    return _start_session(found[0], found[1], None)


# ------------------------------------------------------------------ pages


@bp.get("/")
@page
async def overview(session: Session) -> Response:
    store = app_context().store
    tenant = _tenant(session, request.args.get("tenant"))
    if tenant is None:
        known = sorted({t for t, _ in await store.all_queues(10_000) if not t.startswith("~")})
        return await _render("ui/tenants.html", tenants=known)
    cursor = request.args.get("cursor", "")
    if cursor:
        check_command(cursor, "cursor")
    queues, next_cursor = await store.list_queues(tenant, PAGE_SIZE, cursor)
    rates = await store.rates(tenant, RATES_MINUTES)
    return await _render(
        "ui/overview.html",
        tenant=tenant,
        queues=queues,
        next_cursor=next_cursor,
        cursor=cursor,
        totals=rates.totals(),
    )


@bp.get("/rates")
async def rates() -> Response:
    """The overview chart's data (JSON): the tenant's tasks created, completed, failed
    (by a result) and dead-lettered per minute, the last ``minutes`` (default 60, at
    most 120) up to the current one, oldest first (``startMs`` is the first minute's
    start). Session only (no redirect: a JSON 401); the tenancy rules of the pages."""
    g.ui_json = True
    session = _session()
    if session is None:
        raise Unauthorized("not logged in to the dashboard", code="ui_login_required")
    g.ui_session = session
    tenant = _required_tenant(session, request.args.get("tenant"))
    raw = request.args.get("minutes", str(RATES_MINUTES))
    if not raw.isdigit() or not 1 <= int(raw) <= RATES_MAX_MINUTES:
        raise ValidationError("minutes", f"expected an integer in 1..{RATES_MAX_MINUTES}")
    found = await app_context().store.rates(tenant, int(raw))
    return json_response(
        {
            "tenant": tenant,
            "startMs": found.start,
            "stepSeconds": 60,
            **dict(zip(RATE_SERIES, found.series(), strict=True)),
            "totals": found.totals(),
        }
    )


@bp.get("/queues/<command>")
@page
async def queue(session: Session, command: str) -> Response:
    store = app_context().store
    tenant = _required_tenant(session, request.args.get("tenant"))
    check_command(command)
    stats = await store.queue_stats(tenant, command)
    # One tab per state; without one, the DLQ when it holds tasks (what needs an
    # operator), else the ready tasks.
    state = request.args.get("state") or ("dlq" if stats.dlq else "ready")
    if state not in QUEUE_STATES:
        raise ValidationError("state", f"expected one of {', '.join(QUEUE_STATES)}")
    cursor = request.args.get("cursor", "")
    items, next_cursor = await store.queue_page(tenant, command, state, cursor, PAGE_SIZE)
    rows = [
        task_to_wire(i.meta, None)
        | {"payloadText": _short(i.payload), "scoreAt": _score_at(state, i.score)}
        for i in items
    ]
    return await _render(
        "ui/queue.html",
        tenant=tenant,
        command=command,
        stats=stats,
        state=state,
        states=_STATE_TABS,
        rows=rows,
        dead=rows if state == "dlq" else [],
        cursor=cursor,
        next_cursor=next_cursor,
    )


@bp.get("/workers")
@page
async def workers(session: Session) -> Response:
    """Who works for the tenant now: its open worker streams (from the store's registry,
    every ingress process's, a few seconds old at most) and live subscriptions."""
    store = app_context().store
    tenant = _required_tenant(session, request.args.get("tenant"))
    streams, total = await store.streams.live(tenant)
    subscriptions = await store.subscriptions.of_tenant(tenant)
    return await _render(
        "ui/workers.html",
        tenant=tenant,
        streams=streams,
        streams_total=total,
        subscriptions=[
            {**sub, "expires": rfc3339(sub.get("expiresAt"))}
            for sub in sorted(subscriptions, key=lambda s: (s.get("workerId", ""), s["id"]))
        ],
    )


#: (state, tab label, the stats field that counts it)
_STATE_TABS = (
    ("ready", "Ready", "ready"),
    ("delayed", "Delayed", "delayed"),
    ("in_progress", "In progress", "in_progress"),
    ("dlq", "DLQ", "dlq"),
)


def _score_at(state: str, score: float) -> str | None:
    """The time a row's index score is, for the states whose score is one."""
    return rfc3339(int(score)) if state in ("delayed", "in_progress", "dlq") else None


def _short(payload: str, limit: int = 120) -> str:
    return payload if len(payload) <= limit else payload[: limit - 1] + "…"


def _pretty(raw: str | bytes | None) -> str:
    if raw is None:
        return ""
    try:
        return json.dumps(orjson.loads(raw), indent=2, ensure_ascii=False)
    except orjson.JSONDecodeError:
        return raw if isinstance(raw, str) else raw.decode(errors="replace")


@bp.get("/tasks")
@page
async def find_task(session: Session) -> Response:
    """The search box: a task id, or a task's idempotency key (while the key's window
    lasts, ``tasks.idempotency_ttl``) → the task's page."""
    tenant = _required_tenant(session, request.args.get("tenant"))
    wanted = (request.args.get("id") or "").strip()
    if not wanted:
        raise ValidationError("id", "enter a task id or an idempotency key")
    if len(wanted) > MAX_IDEMPOTENCY_KEY_LEN:
        raise ValidationError("id", f"at most {MAX_IDEMPOTENCY_KEY_LEN} characters")
    store = app_context().store
    task_id = await store.find_by_idempotency_key(tenant, wanted)
    if task_id is None:
        task_id = wanted  # a task id (the task page says when there is no such task)
    return redirect(url_for("ui.task", task_id=task_id, tenant=tenant), 303)  # type: ignore[return-value]


@bp.get("/tasks/<task_id>")
@page
async def task(session: Session, task_id: str) -> Response:
    store = app_context().store
    tenant = _required_tenant(session, request.args.get("tenant"))
    meta, payload, raw_result = await store.get_with_result(tenant, task_id)
    result = orjson.loads(raw_result) if raw_result else synthesized_result(meta)
    artifacts = []
    for a in (result or {}).get("artifacts") or ():
        url = str(a.get("url") or "")
        inline_prefix = f"{PREFIX}/tasks/{task_id}/artifacts/"
        if url.startswith(inline_prefix):
            name = url[len(inline_prefix) :]
            url = url_for("ui.artifact", task_id=task_id, name=name, tenant=tenant)
        elif not url.lower().startswith(("http://", "https://")):
            url = ""
        artifacts.append({"name": a.get("name") or "artifact", "url": url})
    timeline = await task_timeline(store, tenant, meta, result)
    return await _render(
        "ui/task.html",
        tenant=tenant,
        task=task_to_wire(meta, None),
        payload=_pretty(payload),
        result=_pretty(orjson.dumps(result.get("result"))) if result else "",
        result_doc=result,
        artifacts=artifacts,
        timeline=timeline,
    )


@bp.get("/tasks/<task_id>/artifacts/<name>")
@page
async def artifact(session: Session, task_id: str, name: str) -> Response:
    store = app_context().store
    tenant = _required_tenant(session, request.args.get("tenant"))
    _, _, raw = await store.get_with_result(tenant, task_id)
    doc = orjson.loads(raw) if raw else {}
    url = f"{PREFIX}/tasks/{task_id}/artifacts/{name}"
    entry = next((a for a in doc.get("artifacts") or () if a.get("url") == url), None)
    content = (
        await store.artifact(tenant, task_id, name) if entry and is_stored_name(name) else None
    )
    if entry is None or content is None:
        raise NotFound(f"task {task_id} has no artifact {name!r}", code="artifact_not_found")
    return Response(
        content,
        content_type="application/octet-stream",
        headers=download_headers(str(entry.get("name") or name)),
    )


# ------------------------------------------------------------------ changes (POST + CSRF)


@bp.post("/queues/<command>/pause")
@action
async def pause(session: Session, form: MultiDict[str, str], command: str) -> Response:
    tenant = _required_tenant(session, form.get("tenant"))
    await app_context().store.set_paused(tenant, check_command(command), True)
    log.info("ui.pause", sub=session.sub, tenant=tenant, command=command)
    return _back("ui.queue", tenant, "paused", command=command)


@bp.post("/queues/<command>/resume")
@action
async def resume(session: Session, form: MultiDict[str, str], command: str) -> Response:
    tenant = _required_tenant(session, form.get("tenant"))
    await app_context().store.set_paused(tenant, check_command(command), False)
    log.info("ui.resume", sub=session.sub, tenant=tenant, command=command)
    return _back("ui.queue", tenant, "resumed", command=command)


async def _oldest_in_steps(
    step: Callable[[int], Awaitable[tuple[list[Any], Any]]], most: int
) -> int:
    """Apply ``step(n)`` (replay or purge the ``n`` oldest dead tasks) up to ``most``
    tasks in all, ``_DLQ_STEP`` per store call, until the DLQ runs dry; how many."""
    total = 0
    while total < most:
        done, _ = await step(min(_DLQ_STEP, most - total))
        total += len(done)
        if not done:
            break
    return total


def _ids(form: MultiDict[str, str]) -> list[str]:
    ids = form.getlist("id")
    if len(ids) > 10_000:
        raise ValidationError("id", "at most 10000 tasks at once")
    return ids


@bp.post("/queues/<command>/dlq/replay")
@action
async def dlq_replay(session: Session, form: MultiDict[str, str], command: str) -> Response:
    """Replay the selected dead tasks, or (``all=1``) every one, oldest first."""
    store = app_context().store
    tenant = _required_tenant(session, form.get("tenant"))
    check_command(command)
    ids = _ids(form)
    if form.get("all") == "1":
        total = await _oldest_in_steps(
            lambda n: store.dlq_replay(tenant, command, None, n, by=session.sub), REPLAY_ALL_MAX
        )
    elif ids:
        done, _ = await store.dlq_replay(tenant, command, ids, len(ids), by=session.sub)
        total = len(done)
    else:
        return _back("ui.queue", tenant, "nothing", command=command)
    log.info("ui.dlq_replay", sub=session.sub, tenant=tenant, command=command, replayed=total)
    return _back("ui.queue", tenant, "replayed", command=command)


@bp.post("/queues/<command>/dlq/confirm-purge")
@action
async def dlq_confirm_purge(session: Session, form: MultiDict[str, str], command: str) -> Response:
    """The confirmation page of a purge, naming how many tasks it deletes."""
    tenant = _required_tenant(session, form.get("tenant"))
    check_command(command)
    ids = _ids(form)
    if form.get("all") != "1" and not ids:
        return _back("ui.queue", tenant, "nothing", command=command)
    count = len(ids) if ids else (await app_context().store.queue_stats(tenant, command)).dlq
    return await _render(
        "ui/confirm_purge.html", tenant=tenant, command=command, ids=ids, count=count
    )


@bp.post("/queues/<command>/dlq/purge")
@action
async def dlq_purge(session: Session, form: MultiDict[str, str], command: str) -> Response:
    """Delete the confirmed dead tasks: the listed ids, or the oldest ``count``."""
    store = app_context().store
    tenant = _required_tenant(session, form.get("tenant"))
    check_command(command)
    ids = _ids(form)
    raw = form.get("count", "")
    if not raw.isdigit() or len(raw) > 9:
        raise ValidationError("count", "the confirmed number of tasks is required")
    count = int(raw)
    if ids:
        if count != len(ids):
            raise BadRequest("the confirmation names a different number of tasks")
        done, _ = await store.dlq_purge(tenant, command, ids, len(ids))
        total = len(done)
    else:
        total = await _oldest_in_steps(lambda n: store.dlq_purge(tenant, command, None, n), count)
    log.info("ui.dlq_purge", sub=session.sub, tenant=tenant, command=command, purged=total)
    return _back("ui.queue", tenant, "purged", command=command)


@bp.post("/tasks/<task_id>/cancel")
@action
async def cancel(session: Session, form: MultiDict[str, str], task_id: str) -> Response:
    tenant = _required_tenant(session, form.get("tenant"))
    await app_context().store.cancel(tenant, task_id, by=session.sub)
    log.info("ui.cancel", sub=session.sub, tenant=tenant, task_id=task_id)
    return _back("ui.task", tenant, "cancelled", task_id=task_id)
