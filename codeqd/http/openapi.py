"""The OpenAPI 3 document of the HTTP API, served at ``GET /v1/codeq/openapi.json``.

Hand-written (SPEC.md §2 is the contract); ``tests/integration/auth/test_openapi.py``
compares its paths and methods with the app's routes so it cannot drift.
"""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response

from codeqd._version import __version__
from codeqd.http._request import PREFIX

bp = Blueprint("openapi", __name__)

Schema = dict[str, Any]


#: The worker stream is a WebSocket, which OpenAPI cannot describe as an operation.
STREAM_DESCRIPTION = (
    "Worker streams (codeqd extension, SPEC §6): GET /v1/codeq/workers/stream is a "
    "WebSocket (an upgrade on the same port) replacing the claim -> result round trips. "
    "The token comes in the Authorization header of the upgrade or in a first message "
    '{"type":"hello","token":...}; a bad token closes with 4401, a missing codeq:claim '
    'scope with 4403. The worker sends {"type":"ready","commands":[...],'
    '"maxInFlight":N,"leaseSeconds":S}; the server pushes {"type":"task","task":Task} '
    "while fewer than N of the stream's tasks are unfinished. result, nack, heartbeat and "
    "abandon messages carry the HTTP body's fields plus id, leaseId and ref, and get "
    '{"type":"ack","ref","id","status","body"} or {"type":"error","ref","id","status",'
    '"error","code"}, as the HTTP route would answer. The protocol in full: docs/client.md.'
)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = list(required)
    return out


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
TIME: Schema = {"type": "string", "format": "date-time"}
COMMAND: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}
COMMANDS: Schema = {"type": "array", "items": COMMAND, "minItems": 1}
ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
#: A payload: any JSON value but null, returned as it was sent (as codeQ accepts).
PAYLOAD: Schema = {
    "type": ["object", "array", "string", "number", "integer", "boolean"],
    "description": "any JSON value but null, returned as it was sent",
}


#: A wait that is clamped, not refused, past its longest (as codeQ does).
def clamped_wait(longest: int) -> Schema:
    return {
        "type": "integer",
        "minimum": 0,
        "description": f"seconds; a longer wait is clamped to {longest}",
    }


def seconds(lo: int, hi: int | None = None) -> Schema:
    return {"type": "integer", "minimum": lo, **({"maximum": hi} if hi is not None else {})}


SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": STR, "code": STR, "details": ANY_OBJECT}, ("error", "code")),
    "RateLimitError": obj(
        {
            "error": STR,
            "code": STR,
            "scope": STR,
            "operation": STR,
            "retryAfterSeconds": {"type": "integer"},
        },
        ("error", "scope", "operation", "retryAfterSeconds"),
    ),
    "Task": obj(
        {
            "id": STR,
            "command": COMMAND,
            "payload": PAYLOAD,
            "priority": seconds(0, 9),
            "status": {
                "type": "string",
                "enum": ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"],
            },
            "attempts": {"type": "integer"},
            "maxAttempts": {"type": "integer"},
            "workerId": STR,
            "leaseId": {"type": "string", "description": "fencing token of the current lease"},
            "leaseUntil": TIME,
            "runAt": TIME,
            "webhook": STR,
            "idempotencyKey": STR,
            "tenantId": STR,
            "error": STR,
            "createdAt": TIME,
            "updatedAt": TIME,
            "deadLettered": {"type": "boolean"},
            "resultKey": {
                "type": "string",
                "description": "opaque; set once the task's result is stored (as codeQ)",
            },
            "traceParent": {
                "type": "string",
                "description": "the W3C traceparent header its create carried",
            },
            "traceState": {
                "type": "string",
                "description": "the W3C tracestate header its create carried",
            },
        },
        ("id", "command", "payload", "status"),
        description="An optional field with no value is left out, never null (as codeQ).",
    ),
    "Artifact": obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "url": {
                "type": "string",
                "description": "a link: an absolute http:// or https:// URL (other schemes get "
                "400); in a Result, an inline artifact's download path",
            },
            "contentBase64": STR,
            "contentType": STR,
        },
        ("name",),
    ),
    "Result": obj(
        {
            "taskId": STR,
            "status": {"type": "string", "enum": ["COMPLETED", "FAILED"]},
            "result": ANY_OBJECT,
            "error": STR,
            "artifacts": {"type": "array", "items": ref("Artifact")},
            "completedAt": TIME,
        },
        ("taskId", "status"),
        description="result (COMPLETED) or error (FAILED, CANCELLED); a field with no value "
        "is left out, never null.",
    ),
    "NewTask": obj(
        {
            "command": COMMAND,
            "payload": PAYLOAD,
            "priority": seconds(0, 9),
            "maxAttempts": seconds(1, 1000),
            "webhook": {"type": "string", "format": "uri", "maxLength": 2048},
            "idempotencyKey": {"type": "string", "maxLength": 256},
            "runAt": TIME,
            "delaySeconds": seconds(0, 365 * 86400),
        },
        ("command", "payload"),
    ),
    "Claim": obj(
        {"commands": COMMANDS, "leaseSeconds": seconds(1), "waitSeconds": clamped_wait(30)}
    ),
    "BatchClaim": obj(
        {
            "commands": COMMANDS,
            "leaseSeconds": seconds(1),
            "waitSeconds": clamped_wait(30),
            "maxTasks": seconds(1),
        },
        ("maxTasks",),
    ),
    "Lease": obj({"leaseId": {"type": "string", "maxLength": 128}}),
    "Heartbeat": obj({"extendSeconds": seconds(1), "leaseId": {"type": "string"}}),
    "Nack": obj(
        {
            "delaySeconds": seconds(0, 365 * 86400),
            "reason": {"type": "string", "maxLength": 4096},
            "leaseId": STR,
        }
    ),
    "Report": obj(
        {
            "status": {"type": "string", "enum": ["COMPLETED", "FAILED"]},
            "result": ANY_OBJECT,
            "error": {"type": "string", "maxLength": 4096},
            "artifacts": {"type": "array", "items": ref("Artifact")},
            "leaseId": STR,
        },
        ("status",),
    ),
    "TaskWithResult": obj(
        {"task": ref("Task"), "result": ref("Result")},
        ("task", "result"),
    ),
    "QueueStats": obj(
        {
            "command": STR,
            "ready": {"type": "integer"},
            "delayed": {"type": "integer"},
            "inProgress": {"type": "integer"},
            "dlq": {"type": "integer"},
            "paused": {"type": "boolean"},
        },
        ("command", "ready", "delayed", "inProgress", "dlq"),
    ),
    "Subscription": obj(
        {
            "callbackUrl": {"type": "string", "format": "uri"},
            "eventTypes": COMMANDS,
            "deliveryMode": {"type": "string", "enum": ["fanout", "group", "hash"]},
            "groupId": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
            "minIntervalSeconds": seconds(0, 86400),
            "ttlSeconds": seconds(1),
        },
        ("callbackUrl",),
    ),
    "SubscriptionLease": obj(
        {"subscriptionId": STR, "expiresAt": TIME}, ("subscriptionId", "expiresAt")
    ),
}

ERRORS = {
    "400": "malformed JSON, wrong type or out-of-range value (the message names the field)",
    "401": "missing or invalid token (the message names the reason; WWW-Authenticate: Bearer)",
    "403": "valid token without the scope, event type or role; on a worker's call about a "
    "task, not_lease_holder: another worker (sub) holds its lease",
    "404": "unknown task, or a task of another tenant (task_not_found); on GET .../result, "
    "result_not_found while the task has no result yet",
    "408": "the body stopped arriving for actors.ingress.request_timeout (connection closed)",
    "409": "state conflict: not in progress, lease lost (a stale leaseId), already terminal",
    "413": "body larger than limits.body_bytes",
    "415": "Content-Type is not application/json",
    "429": "rate limited (Retry-After)",
    "431": "request headers larger than limits.header_bytes",
    "503": "store or JWKS key set unavailable (Retry-After)",
}
AUTH_ERRORS = ("400", "401", "403", "408", "413", "415", "429", "431", "503")


def _json(schema: Schema) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, tuple[str, Schema | None]], errors: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (text, schema) in ok.items():
        out[status] = {"description": text, **(_json(schema) if schema else {})}
    for status in errors:
        schema = ref("RateLimitError") if status == "429" else ref("Error")
        out[status] = {"description": ERRORS[status], **_json(schema)}
    return out


def op(
    summary: str,
    audience: str,
    ok: dict[str, tuple[str, Schema | None]],
    *,
    body: Schema | None = None,
    body_required: bool = False,
    scope: str | None = None,
    errors: tuple[str, ...] = (),
    params: list[dict[str, Any]] | None = None,
) -> Schema:
    """One operation; ``audience`` is producer, worker, admin, any or none."""
    out: Schema = {"summary": summary, "x-codeq-audience": audience}
    if audience != "none":
        out["security"] = [{"bearer": [scope] if scope else []}]
        errors = (*AUTH_ERRORS, *errors)
        if scope:
            out["description"] = f"Worker token with the `{scope}` scope."
    if body is not None:
        out["requestBody"] = {"required": body_required, **_json(body)}
    if params:
        out["parameters"] = params
    out["responses"] = _responses(ok, tuple(sorted(set(errors))))
    return out


def path_param(name: str, schema: Schema = STR) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, schema: Schema, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


TASK_ID = path_param("task_id")
#: W3C trace context of a create: stored on the task, sent on its result callback.
TRACE_HEADERS = [
    {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "schema": STR,
        "description": "W3C traceparent: stored as traceParent (ignored when invalid)",
    },
    {
        "name": "tracestate",
        "in": "header",
        "required": False,
        "schema": STR,
        "description": "W3C tracestate: stored as traceState (with a valid traceparent)",
    },
]
CMD = path_param("command", COMMAND)
TENANT = query(
    "tenant",
    STR,
    "for an admin token with tenant '*': the tenant to act on "
    "(required, except for cleanup where omitting it means all)",
)
OK_STATUS = obj({"status": STR}, ("status",))
P = PREFIX

PATHS: dict[str, dict[str, Schema]] = {
    "/healthz": {"get": op("Liveness", "none", {"200": ("alive", OK_STATUS)})},
    "/readyz": {
        "get": op(
            "Readiness: the store answers", "none", {"200": ("ready", OK_STATUS)}, errors=("503",)
        )
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (bind to a private address)",
            "x-codeq-audience": "none",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": STR}},
                }
            },
        }
    },
    f"{P}/openapi.json": {
        "get": op("This document", "none", {"200": ("OpenAPI 3.1 document", ANY_OBJECT)})
    },
    f"{P}/tasks": {
        "post": op(
            "Create a task",
            "producer",
            {"202": ("created", ref("Task"))},
            body=ref("NewTask"),
            body_required=True,
            params=TRACE_HEADERS,
        )
    },
    f"{P}/tasks/batch": {
        "post": op(
            "Create up to limits.batch_max tasks (ratelimit.create: one token per task)",
            "producer",
            {
                "202": (
                    "per item: Task or error, same order",
                    obj({"tasks": {"type": "array", "items": ANY_OBJECT}}, ("tasks",)),
                )
            },
            body=obj({"tasks": {"type": "array", "items": ref("NewTask")}}, ("tasks",)),
            body_required=True,
            params=TRACE_HEADERS,
        )
    },
    f"{P}/tasks/claim": {
        "post": op(
            "Lease the next task (long-poll up to waitSeconds)",
            "worker",
            {"200": ("leased", ref("Task")), "204": ("nothing claimable within waitSeconds", None)},
            body=ref("Claim"),
            scope="codeq:claim",
        )
    },
    f"{P}/tasks/claim/batch": {
        "post": op(
            "Lease up to maxTasks tasks (ratelimit.claim: maxTasks tokens, charged up front)",
            "worker",
            {
                "200": (
                    "leased (possibly none)",
                    obj({"tasks": {"type": "array", "items": ref("Task")}}, ("tasks",)),
                )
            },
            body=ref("BatchClaim"),
            body_required=True,
            scope="codeq:claim",
        )
    },
    f"{P}/tasks/batch/results": {
        "post": op(
            "Report several results",
            "worker",
            {"200": ("per-item outcomes", ANY_OBJECT)},
            body=obj({"results": {"type": "array", "items": ANY_OBJECT}}, ("results",)),
            body_required=True,
            scope="codeq:result",
        )
    },
    f"{P}/tasks/{{task_id}}": {
        "get": op(
            "Read a task",
            "any",
            {"200": ("the task", ref("Task"))},
            errors=("404",),
            params=[TASK_ID],
        ),
        "delete": op(
            "Cancel a task",
            "producer",
            {"200": ("cancelled", ref("Task"))},
            errors=("404", "409"),
            params=[TASK_ID],
        ),
    },
    f"{P}/tasks/{{task_id}}/artifacts/{{name}}": {
        "get": op(
            "Download an inline artifact of the task's result: its bytes, labelled with its "
            "contentType, as an attachment (Content-Disposition) with "
            "X-Content-Type-Options: nosniff and Content-Security-Policy: default-src 'none'; "
            "sandbox, so a browser never renders it as a page of this origin",
            "any",
            {"200": ("the artifact's content", None)},
            errors=("404",),
            params=[TASK_ID, path_param("name")],
        )
    },
    f"{P}/tasks/{{task_id}}/result": {
        "get": op(
            "Read (or wait for) the result",
            "any",
            {"200": ("the task and its result", ref("TaskWithResult"))},
            errors=("404",),
            params=[
                TASK_ID,
                query(
                    "waitSeconds",
                    clamped_wait(60),
                    "wait up to this long for the result; 404 result_not_found if the wait "
                    "ends without one (at once without waitSeconds)",
                ),
            ],
        ),
        "post": op(
            "Report the result (lease holder)",
            "worker",
            {"200": ("stored", ref("Result"))},
            body=ref("Report"),
            body_required=True,
            scope="codeq:result",
            errors=("404", "409"),
            params=[TASK_ID],
        ),
    },
    f"{P}/tasks/{{task_id}}/heartbeat": {
        "post": op(
            "Extend the lease",
            "worker",
            {
                "200": (
                    "extended",
                    obj({"ok": {"type": "boolean"}, "leaseUntil": TIME}, ("ok", "leaseUntil")),
                )
            },
            body=ref("Heartbeat"),
            scope="codeq:heartbeat",
            errors=("404", "409"),
            params=[TASK_ID],
        )
    },
    f"{P}/tasks/{{task_id}}/abandon": {
        "post": op(
            "Give the task back without a penalty",
            "worker",
            {"200": ("requeued", OK_STATUS)},
            body=ref("Lease"),
            scope="codeq:abandon",
            errors=("404", "409"),
            params=[TASK_ID],
        )
    },
    f"{P}/tasks/{{task_id}}/nack": {
        "post": op(
            "Retry later (backoff) or dead-letter",
            "worker",
            {
                "200": (
                    "requeued, or dead-lettered (dlq, delaySeconds 0): codeQ's answers",
                    obj(
                        {
                            "status": {"type": "string", "enum": ["requeued", "dlq"]},
                            "delaySeconds": {"type": "integer"},
                        },
                        ("status", "delaySeconds"),
                    ),
                )
            },
            body=ref("Nack"),
            scope="codeq:nack",
            errors=("404", "409"),
            params=[TASK_ID],
        )
    },
    f"{P}/workers/subscriptions": {
        "post": op(
            "Subscribe to worker-availability notifications",
            "worker",
            {"200": ("subscribed", ref("SubscriptionLease"))},
            body=ref("Subscription"),
            body_required=True,
            scope="codeq:subscribe",
        )
    },
    f"{P}/workers/subscriptions/{{subscription_id}}/heartbeat": {
        "post": op(
            "Keep a subscription alive",
            "worker",
            {"200": ("extended", ref("SubscriptionLease"))},
            body=ANY_OBJECT,
            errors=("404",),
            params=[path_param("subscription_id")],
        )
    },
    f"{P}/workers/subscriptions/{{subscription_id}}": {
        "delete": op(
            "Unsubscribe",
            "worker",
            {"204": ("removed", None)},
            errors=("404",),
            params=[path_param("subscription_id")],
        )
    },
    f"{P}/admin/queues": {
        "get": op(
            "A page of the tenant's queues, in command order (the next page's cursor is "
            "in the X-Next-Cursor header, absent after the last page)",
            "admin",
            {"200": ("queues", {"type": "array", "items": ref("QueueStats")})},
            params=[
                TENANT,
                query("limit", seconds(1, 1000), "page size (default 100)"),
                query("cursor", COMMAND, "the previous page's X-Next-Cursor"),
            ],
        )
    },
    f"{P}/admin/queues/{{command}}": {
        "get": op(
            "One queue's counts",
            "admin",
            {"200": ("counts", ref("QueueStats"))},
            params=[CMD, TENANT],
        )
    },
    f"{P}/admin/queues/{{command}}/stats": {
        "get": op(
            "One queue's counts",
            "admin",
            {"200": ("counts", ref("QueueStats"))},
            params=[CMD, TENANT],
        )
    },
    f"{P}/admin/queues/{{command}}/dlq": {
        "get": op(
            "A page of dead-lettered tasks, oldest first",
            "admin",
            {
                "200": (
                    "page",
                    obj(
                        {
                            "tasks": {"type": "array", "items": ref("Task")},
                            "nextCursor": {"type": ["string", "null"]},
                        },
                        ("tasks",),
                    ),
                )
            },
            params=[
                CMD,
                TENANT,
                query("limit", seconds(1, 1000), "page size"),
                query("cursor", seconds(0, 2**62), "from the previous page's nextCursor"),
            ],
        )
    },
    f"{P}/admin/queues/{{command}}/dlq/replay": {
        "post": op(
            "Requeue dead tasks (chosen ids, or the oldest limit)",
            "admin",
            {
                "200": (
                    "replayed",
                    obj(
                        {
                            "replayed": {"type": "integer"},
                            "ids": {"type": "array", "items": STR},
                            "notFound": {"type": "array", "items": STR},
                        },
                        ("replayed",),
                    ),
                )
            },
            body=obj(
                {
                    "ids": {"type": "array", "items": STR, "maxItems": 10000},
                    "limit": seconds(1, 10000),
                }
            ),
            params=[CMD, TENANT],
        )
    },
    f"{P}/admin/queues/{{command}}/dlq/purge": {
        "post": op(
            "Delete dead tasks for good (chosen ids, or the oldest limit)",
            "admin",
            {
                "200": (
                    "purged",
                    obj(
                        {
                            "purged": {"type": "integer"},
                            "ids": {"type": "array", "items": STR},
                            "notFound": {"type": "array", "items": STR},
                        },
                        ("purged",),
                    ),
                )
            },
            body=obj(
                {
                    "ids": {"type": "array", "items": STR, "maxItems": 10000},
                    "limit": seconds(1, 10000),
                }
            ),
            params=[CMD, TENANT],
        )
    },
    f"{P}/admin/queues/{{command}}/pause": {
        "post": op(
            "Stop handing out tasks of a queue",
            "admin",
            {"200": ("paused", obj({"command": STR, "paused": {"type": "boolean"}}))},
            params=[CMD, TENANT],
        )
    },
    f"{P}/admin/queues/{{command}}/resume": {
        "post": op(
            "Hand out tasks of a queue again",
            "admin",
            {"200": ("resumed", obj({"command": STR, "paused": {"type": "boolean"}}))},
            params=[CMD, TENANT],
        )
    },
    f"{P}/admin/tasks/cleanup": {
        "post": op(
            "Delete terminal tasks finished before a time",
            "admin",
            {
                "200": (
                    "what was deleted, and the cut-off and limit applied",
                    obj(
                        {
                            "deleted": {"type": "integer"},
                            "before": TIME,
                            "limit": {"type": "integer"},
                        },
                        ("deleted", "before", "limit"),
                    ),
                )
            },
            body=obj({"before": TIME, "limit": seconds(1, 100000)}),
            params=[TENANT],
        )
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "codeqd",
        "version": __version__,
        "description": "Task queue daemon, wire-compatible with codeQ's /v1/codeq API. Every "
        "error is {error, code, details}; 429 is {error, scope, operation, "
        "retryAfterSeconds}.\n\n" + STREAM_DESCRIPTION,
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "Producer token, worker token (aud codeq-worker, scope, eventTypes) "
                "or admin token (producer token with role ADMIN), per operation's "
                "x-codeq-audience.",
            }
        },
    },
}

_BODY = orjson.dumps(DOCUMENT)


@bp.get(f"{PREFIX}/openapi.json")
async def openapi() -> Response:
    return Response(_BODY, content_type="application/json")
