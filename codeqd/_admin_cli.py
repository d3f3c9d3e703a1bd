"""Admin subcommands of ``codeqd``, on top of the HTTP API: queues, DLQ, tasks.

Base URL and token come from ``--url``/``--token`` or ``CODEQD_URL``/``CODEQD_TOKEN``;
without a token, in dev mode, an admin dev token is minted from the local
state dir. Output is a human table, or the API's JSON with ``--json``. Errors
are one line on stderr with exit 1 (API refused) or 3 (daemon unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from codeqd import config as cfgmod


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    config = cfgmod.load(cfgmod.find_config_path(args.config))
    if config.auth.mode != "dev":
        raise CliError("no token: pass --token or set CODEQD_TOKEN")
    from codeqd.auth import load_or_create_dev_secret, mint_dev_token

    return mint_dev_token(load_or_create_dev_secret(config), "admin", sub="codeqd-cli", ttl=300)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    url = f"{args.url.rstrip('/')}/v1/codeq{path}"
    headers = {"Authorization": f"Bearer {_token(args)}"}
    try:
        r = httpx.request(method, url, json=body, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach codeqd at {args.url}: {e}", 3) from None
    if r.status_code >= 400:
        try:
            err = r.json()
            message = f"{err.get('error')} ({err.get('code')})"
        except ValueError:
            message = r.text[:200]
        raise CliError(f"{method} {path}: {r.status_code} {message}")
    return r.json() if r.content else None


def _table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    if not rows:
        return "(none)"
    cells = [[h for h, _ in columns]] + [[_cell(r.get(k)) for _, k in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


QUEUE_COLUMNS = [
    ("COMMAND", "command"),
    ("READY", "ready"),
    ("DELAYED", "delayed"),
    ("IN PROGRESS", "inProgress"),
    ("DLQ", "dlq"),
    ("PAUSED", "paused"),
]
TASK_COLUMNS = [
    ("ID", "id"),
    ("COMMAND", "command"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attempts"),
    ("ERROR", "error"),
    ("UPDATED", "updatedAt"),
]


def _show(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


def _ids_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"limit": args.limit}
    if args.ids:
        body["ids"] = args.ids
    return body


def run(args: argparse.Namespace) -> None:
    what = args.admin_command
    if what == "queues":
        data = _call(args, "GET", "/admin/queues")
        _show(args, data, _table(data, QUEUE_COLUMNS))
    elif what == "queue":
        if args.action == "stats":
            data = _call(args, "GET", f"/admin/queues/{args.cmd}/stats")
            _show(args, data, _table([data], QUEUE_COLUMNS))
        else:
            data = _call(args, "POST", f"/admin/queues/{args.cmd}/{args.action}", {})
            _show(args, data, f"{args.cmd}: {'paused' if data['paused'] else 'resumed'}")
    elif what == "dlq":
        if args.action == "list":
            q = f"?limit={args.limit}" + (f"&cursor={args.cursor}" if args.cursor else "")
            data = _call(args, "GET", f"/admin/queues/{args.cmd}/dlq{q}")
            more = f"\nnext page: --cursor {data['nextCursor']}" if data.get("nextCursor") else ""
            _show(args, data, _table(data["tasks"], TASK_COLUMNS) + more)
        else:
            data = _call(
                args, "POST", f"/admin/queues/{args.cmd}/dlq/{args.action}", _ids_body(args)
            )
            verb = "replayed" if args.action == "replay" else "purged"
            lines = [f"{verb} {data[verb]}"] + [f"not found: {i}" for i in data["notFound"]]
            _show(args, data, "\n".join(lines))
    elif what == "task":
        if args.action == "get":
            data = _call(args, "GET", f"/tasks/{args.id}")
            _show(args, data, json.dumps(data, indent=2))
        elif args.action == "cancel":
            data = _call(args, "DELETE", f"/tasks/{args.id}")
            _show(args, data, f"{data['id']}: {data['status']}")
        else:
            try:
                payload = json.loads(args.payload)
            except ValueError as e:
                raise CliError(f"--payload is not valid JSON: {e}") from None
            body: dict[str, Any] = {
                "command": args.command_name,
                "payload": payload,
                "priority": args.priority,
            }
            if args.delay:
                body["delaySeconds"] = args.delay
            if args.idempotency_key:
                body["idempotencyKey"] = args.idempotency_key
            data = _call(args, "POST", "/tasks", body)
            _show(args, data, data["id"])


def _main(args: argparse.Namespace) -> int:
    try:
        run(args)
    except CliError as e:
        print(f"codeqd: {e}", file=sys.stderr)
        return e.code
    return 0


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("CODEQD_URL", "http://127.0.0.1:8080"),
        help="daemon base URL (env CODEQD_URL; default http://127.0.0.1:8080)",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("CODEQD_TOKEN"),
        help="admin/producer token (env CODEQD_TOKEN; dev mode: minted)",
    )
    common.add_argument("--config", metavar="PATH", help="config, for minting a dev token")
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    common.add_argument("--timeout", type=float, default=10, help="seconds (default 10)")

    p = sub.add_parser("queues", help="list queues with their depths", parents=[common])
    p.set_defaults(func=_main, admin_command="queues")

    q = sub.add_parser("queue", help="one queue: stats, pause, resume").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    for action, text in (
        ("stats", "depths of a queue"),
        ("pause", "stop handing out tasks"),
        ("resume", "hand out tasks again"),
    ):
        p = q.add_parser(action, help=text, parents=[common])
        p.add_argument("cmd", metavar="COMMAND")
        p.set_defaults(func=_main, admin_command="queue")

    d = sub.add_parser("dlq", help="dead-letter queue: list, replay, purge").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = d.add_parser("list", help="dead tasks, oldest first", parents=[common])
    p.add_argument("cmd", metavar="COMMAND")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor")
    p.set_defaults(func=_main, admin_command="dlq")
    for action, text in (
        ("replay", "requeue dead tasks with fresh attempts"),
        ("purge", "delete dead tasks for good"),
    ):
        p = d.add_parser(action, help=text, parents=[common])
        p.add_argument("cmd", metavar="COMMAND")
        p.add_argument("ids", nargs="*", metavar="ID", help="task ids (default: the oldest)")
        p.add_argument("--limit", type=int, default=100, help="how many of the oldest")
        p.set_defaults(func=_main, admin_command="dlq")

    t = sub.add_parser("task", help="one task: get, cancel, create").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    for action, text in (("get", "show a task"), ("cancel", "cancel a task")):
        p = t.add_parser(action, help=text, parents=[common])
        p.add_argument("id", metavar="ID")
        p.set_defaults(func=_main, admin_command="task")
    p = t.add_parser("create", help="create a task", parents=[common])
    p.add_argument("--command", dest="command_name", required=True)
    p.add_argument("--payload", default="{}", help="JSON object (default {})")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--delay", type=int, default=0, help="delaySeconds")
    p.add_argument("--idempotency-key")
    p.set_defaults(func=_main, admin_command="task")
