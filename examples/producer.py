"""Submit tasks to codeqd, wait for their results, print one JSON line per task.

    CODEQD_URL=http://127.0.0.1:8080 CODEQD_TOKEN=$(codeqd token --role producer) \
        python examples/producer.py --command greet ada grace

Exits non-zero when a task could not be created or did not complete.
"""

from __future__ import annotations

import argparse
import json
import sys

from codeqd_client import CodeqError, NewTask, Producer, Task  # or codeqd.client (daemon)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default="greet", help="the task command (default: greet)")
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait per result")
    parser.add_argument("names", nargs="*", default=["world"], help="one task per name")
    args = parser.parse_args()

    # URL and token come from CODEQD_URL / CODEQD_TOKEN; pass them explicitly if you prefer.
    with Producer() as producer:
        created = producer.create_many(
            NewTask(command=args.command, payload={"name": name}) for name in args.names
        )
        ok = True
        for item in created:
            if isinstance(item, CodeqError):  # a per-task refusal, e.g. a bad command name
                print(json.dumps({"error": str(item)}))
                ok = False
                continue
            outcome = producer.result(item.id, wait=args.wait)  # blocks until done or --wait
            result = outcome.result.result if outcome.result else None
            print(json.dumps(summary(outcome.task, result)))
            ok = ok and outcome.task.status == "COMPLETED"
    return 0 if ok else 1


def summary(task: Task, result: object) -> dict[str, object]:
    return {
        "id": task.id,
        "command": task.command,
        "status": task.status,
        "attempts": task.attempts,
        "result": result,
        "error": task.error,
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CodeqError as e:  # one line, no traceback: 401 bad token, daemon down, ...
        sys.exit(f"producer: {e}")
