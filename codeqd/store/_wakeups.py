"""WakeHub: store pub/sub wake-ups → trio events for long-polls (stub)."""

from __future__ import annotations

import trio


class WakeHub:
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for wake-ups until cancelled; started by the ingress actor."""
        task_status.started()
        await trio.sleep_forever()
