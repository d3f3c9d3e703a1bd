"""``codeqd-worker -- COMMAND ARGS...`` (also ``codeqd worker``): a shell command per task.

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

import anyio
from anyio.abc import ByteReceiveStream, Process

from codeqd_client import _json, worker
from codeqd_client._exceptions import CodeqError
from codeqd_client._models import Task
from codeqd_client._version import __version__

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
            "CODEQ_TASK_JSON": _json.dumps(doc).decode(),
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
        value = _json.loads(text)
    except ValueError:
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


async def _kill_group(process: Process) -> None:
    """Stop the handler and everything it started (its own session / process group)."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        if grace is not None:
            with anyio.move_on_after(grace):
                await process.wait()


async def run_command(
    argv: list[str], stdin: bytes, env: Mapping[str, str]
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in its own session with ``stdin``: (returncode, stdout, stderr).

    Cancelled, it stops the command's whole process group (:func:`_kill_group`)
    and waits for the command to exit before letting the cancellation through.
    """
    process = await anyio.open_process(argv, env=env, start_new_session=True)
    out, err = bytearray(), bytearray()

    async def feed() -> None:
        assert process.stdin is not None
        try:
            await process.stdin.send(stdin)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the command exited or closed stdin without reading it all
        finally:
            await process.stdin.aclose()

    async def drain(stream: ByteReceiveStream | None, into: bytearray) -> None:
        assert stream is not None
        async for chunk in stream:
            into += chunk

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            tg.start_soon(drain, process.stdout, out)
            tg.start_soon(drain, process.stderr, err)
        returncode = await process.wait()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _kill_group(process)
            await process.wait()
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()
    return returncode, bytes(out), bytes(err)


class ShellHandler:
    """Runs ``argv`` for each task (a :mod:`codeqd_client.worker` handler).

    Cancellation (shutdown, lost lease) and ``timeout`` stop the command's
    whole process group: SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds.
    """

    def __init__(self, argv: list[str], timeout: float | None = None) -> None:
        self.argv = argv
        self.timeout = timeout

    async def __call__(self, task: Task) -> dict[str, Any]:
        with anyio.move_on_after(self.timeout or None) as scope:
            returncode, stdout, stderr = await run_command(
                self.argv, _json.dumps(task.payload), task_env(task, os.environ)
            )
        if scope.cancelled_caught:
            raise worker.Retry(f"timed out after {self.timeout:g}s (killed)")
        if returncode != 0:
            raise worker.Retry(failure_reason(returncode, stderr))
        return result_from_stdout(stdout)


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


DESCRIPTION = (
    "Claim tasks and run COMMAND for each: the payload JSON on stdin, the "
    "task in CODEQ_TASK_ID, CODEQ_COMMAND, CODEQ_ATTEMPT, CODEQ_MAX_ATTEMPTS, "
    "CODEQ_PRIORITY, CODEQ_TENANT_ID and CODEQ_TASK_JSON (without the payload). "
    "Exit 0 completes the task with stdout's JSON object as the result; any "
    "other exit nacks it (retried with backoff) with stderr's tail as the "
    "reason. SIGTERM/SIGINT: stop claiming, let running commands finish "
    "within --grace, then kill them and give their tasks back."
)


def _epilog(prog: str) -> str:
    return (
        "example: CODEQD_TOKEN=$(codeqd token --role worker --events resize) "
        f"{prog} --events resize --concurrency 4 -- ./resize.sh"
    )


def add_parser(subparsers: Any) -> None:
    """``codeqd worker``: the daemon's CLI registers this subcommand."""
    p = subparsers.add_parser(
        "worker",
        help="run a shell command for each task (a worker process)",
        description=DESCRIPTION,
        epilog=_epilog("codeqd worker"),
    )
    configure(p, "codeqd worker")


def configure(p: argparse.ArgumentParser, prog: str) -> None:
    """The worker's options and ``-- COMMAND``; ``prog`` names it in messages."""
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
    p.add_argument(
        "--transport",
        default="auto",
        choices=["auto", "stream", "http"],
        help="how tasks arrive: the worker stream (a WebSocket), HTTP long-polling, or "
        "auto: the stream when the daemon serves it, else long-polling (default auto)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "handler",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="the command run per task",
    )
    p.set_defaults(func=cmd_worker, prog=prog)


def _fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    print(f"{args.prog}: {message}", file=sys.stderr)
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    argv = list(args.handler)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        return _fail(args, f"no command given; usage: {args.prog} [options] -- COMMAND [ARGS...]")
    if shutil.which(argv[0]) is None:
        return _fail(args, f"{argv[0]}: not found or not executable")
    token = args.token or os.environ.get("CODEQD_TOKEN")
    if not token:
        return _fail(
            args, "no token; pass --token or set CODEQD_TOKEN (dev: codeqd token --role worker)"
        )
    events = [e.strip() for e in (args.events or "").split(",") if e.strip()]
    shell = ShellHandler(argv, args.timeout or None)
    handlers: dict[str, worker.Handler] = {e: shell for e in events} or {"*": shell}
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format=f"{args.prog}: %(message)s"
    )
    try:
        anyio.run(
            functools.partial(
                worker.run,
                handlers,
                url=args.url,
                token=token,
                concurrency=args.concurrency,
                lease_seconds=args.lease,
                wait_seconds=args.wait,
                grace_seconds=args.grace,
                transport=args.transport,
            ),
            backend=worker.default_backend(),
        )
    except CodeqError as e:
        return _fail(args, str(e), 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``codeqd-worker [options] -- COMMAND``: the shell worker without the daemon installed."""
    parser = argparse.ArgumentParser(
        prog="codeqd-worker", description=DESCRIPTION, epilog=_epilog("codeqd-worker")
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    configure(parser, "codeqd-worker")
    return cmd_worker(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
