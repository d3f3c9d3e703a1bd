"""``codeqd worker -- COMMAND ARGS...``: a worker that runs a shell command per task.

The command gets the payload JSON on stdin and the task in ``CODEQ_*``
environment variables; exit 0 completes the task with stdout's JSON as the
result, any other exit nacks it with the tail of stderr as the reason.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from typing import Any

import orjson
import trio

from codeqd import worker
from codeqd.client import CodeqError, Task

#: How much of stderr becomes the nack reason (the daemon keeps up to 4096 chars).
REASON_TAIL = 2000
#: After a timeout: SIGTERM to the handler's process group, SIGKILL this much later.
KILL_GRACE = 2.0


def task_env(task: Task, base: Mapping[str, str]) -> dict[str, str]:
    """The handler's environment: ours, minus the worker token, plus the task.

    ``CODEQ_TASK_JSON`` is the task without its payload (the payload is on
    stdin, and a large one would overflow the exec size limits).
    """
    env = {k: v for k, v in base.items() if k != "CODEQD_TOKEN"}
    doc = {k: v for k, v in task.to_wire().items() if k != "payload"}
    env.update(
        {
            "CODEQ_TASK_ID": task.id,
            "CODEQ_COMMAND": task.command,
            "CODEQ_ATTEMPT": str(task.attempts),
            "CODEQ_MAX_ATTEMPTS": "" if task.max_attempts is None else str(task.max_attempts),
            "CODEQ_PRIORITY": str(task.priority),
            "CODEQ_TENANT_ID": task.tenant_id or "",
            "CODEQ_TASK_JSON": orjson.dumps(doc).decode(),
        }
    )
    return env


def result_from_stdout(stdout: bytes) -> dict[str, Any]:
    """A successful run's result: stdout's JSON object; other output is wrapped.

    Empty → ``{}``; JSON that is not an object → ``{"value": ...}``; text that is
    not JSON → ``{"stdout": text}``.
    """
    text = stdout.strip()
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"stdout": text.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


def failure_reason(returncode: int, stderr: bytes) -> str:
    """The nack reason for a failed run: the exit status and stderr's tail."""
    if returncode < 0:
        try:
            status = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            status = f"killed by signal {-returncode}"
    else:
        status = f"exit {returncode}"
    tail = stderr.decode(errors="replace").strip()[-REASON_TAIL:]
    return f"{status}: {tail}" if tail else status


async def _kill_group(process: trio.Process) -> None:
    """Stop the handler and everything it started (its own session / process group)."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        if grace is not None:
            with trio.move_on_after(grace):
                await process.wait()


class ShellHandler:
    """Runs ``argv`` for each task (a :mod:`codeqd.worker` handler).

    Cancellation (shutdown, lost lease) and ``timeout`` stop the command's
    whole process group: SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds.
    """

    def __init__(self, argv: list[str], timeout: float | None = None) -> None:
        self.argv = argv
        self.timeout = timeout

    async def __call__(self, task: Task) -> dict[str, Any]:
        scope = trio.move_on_after(self.timeout) if self.timeout else trio.CancelScope()
        with scope:
            proc = await trio.run_process(
                self.argv,
                stdin=orjson.dumps(task.payload),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=task_env(task, os.environ),
                start_new_session=True,
                deliver_cancel=_kill_group,
            )
        if scope.cancelled_caught:
            raise worker.Retry(f"timed out after {self.timeout:g}s (killed)")
        if proc.returncode != 0:
            raise worker.Retry(failure_reason(proc.returncode, proc.stderr))
        return result_from_stdout(proc.stdout)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a shell command for each task (a worker process)",
        description="Claim tasks and run COMMAND for each: the payload JSON on stdin, the "
        "task in CODEQ_TASK_ID, CODEQ_COMMAND, CODEQ_ATTEMPT, CODEQ_MAX_ATTEMPTS, "
        "CODEQ_PRIORITY, CODEQ_TENANT_ID and CODEQ_TASK_JSON (without the payload). "
        "Exit 0 completes the task with stdout's JSON object as the result; any "
        "other exit nacks it (retried with backoff) with stderr's tail as the "
        "reason. SIGTERM/SIGINT: stop claiming, let running commands finish "
        "within --grace, then kill them and give their tasks back.",
        epilog="example: CODEQD_TOKEN=$(codeqd token --role worker --events resize) "
        "codeqd worker --events resize --concurrency 4 -- ./resize.sh",
    )
    p.add_argument("--url", help="daemon URL (default: $CODEQD_URL, else http://127.0.0.1:8080)")
    p.add_argument("--token", help="worker token (default: $CODEQD_TOKEN)")
    p.add_argument(
        "--events",
        help="commands to claim, comma separated (default: every command the token allows)",
    )
    p.add_argument(
        "--concurrency", type=_positive_int, default=1, help="tasks run at once (default 1)"
    )
    p.add_argument(
        "--lease",
        type=_positive_int,
        default=60,
        metavar="SECONDS",
        help="lease per task, heartbeated every third of it (default 60)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="kill a command running longer and nack its task (default: none)",
    )
    p.add_argument(
        "--wait",
        type=int,
        default=20,
        metavar="SECONDS",
        help="long-poll wait per claim, at most 30 (default 20)",
    )
    p.add_argument(
        "--grace",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, time running commands get to finish (default 10)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "handler",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="the command run per task",
    )
    p.set_defaults(func=cmd_worker)


def _fail(message: str, code: int = 2) -> int:
    print(f"codeqd worker: {message}", file=sys.stderr)
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    argv = list(args.handler)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        return _fail("no command given; usage: codeqd worker [options] -- COMMAND [ARGS...]")
    if shutil.which(argv[0]) is None:
        return _fail(f"{argv[0]}: not found or not executable")
    token = args.token or os.environ.get("CODEQD_TOKEN")
    if not token:
        return _fail("no token; pass --token or set CODEQD_TOKEN (dev: codeqd token --role worker)")
    events = [e.strip() for e in (args.events or "").split(",") if e.strip()]
    shell = ShellHandler(argv, args.timeout or None)
    handlers: dict[str, worker.Handler] = {e: shell for e in events} or {"*": shell}
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="codeqd worker: %(message)s"
    )
    try:
        trio.run(
            functools.partial(
                worker.run,
                handlers,
                url=args.url,
                token=token,
                concurrency=args.concurrency,
                lease_seconds=args.lease,
                wait_seconds=args.wait,
                grace_seconds=args.grace,
            )
        )
    except CodeqError as e:
        return _fail(str(e), 1)
    return 0
