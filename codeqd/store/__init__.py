"""The only code that speaks to the store (KVRocks or Redis); its one face.

``Store`` has one method per Lua transition (scripts in ``lua/``, key names built
in ``_keys``), and carries the store's other faces: ``store.outbox`` (result
callbacks), ``store.subscriptions`` (worker-availability subscriptions),
``store.streams`` (open worker streams, for the dashboard),
``store.take_rate`` (rate limits), ``store.create_batch``/``report_batch``.
``WakeHub`` turns the store's wake-ups into trio events for long-polling
requests; ``store.wakeups`` is the process's one listener, which fans hints out
to the actors' inboxes (``store.wakeups.inbox(...)``). Nothing outside this package
imports its private modules or knows a key, channel or message format.
"""

from codeqd.store._batch import Created, Report
from codeqd.store._face import Store, connect
from codeqd.store._hints import (
    Hint,
    Inbox,
    QueueWork,
    Resync,
    SubscriptionsChanged,
    TaskDone,
    Wakeups,
)
from codeqd.store._outbox import Outbox, OutboxEntry, Outcome
from codeqd.store._ratelimit import Decision
from codeqd.store._store import (
    QUEUE_STATES,
    RATE_SERIES,
    RATES_MAX_MINUTES,
    ClaimedTask,
    Meta,
    QueueItem,
    QueueState,
    QueueStats,
    Rates,
    now_ms,
)
from codeqd.store._streams import StreamRegistry
from codeqd.store._subscriptions import Subscriptions, is_subscription_id, new_subscription_id
from codeqd.store._wakeups import HUB_HINTS, HUB_OWN, Waiter, WakeHub

__all__ = [
    "HUB_HINTS",
    "HUB_OWN",
    "QUEUE_STATES",
    "RATES_MAX_MINUTES",
    "RATE_SERIES",
    "ClaimedTask",
    "Created",
    "Decision",
    "Hint",
    "Inbox",
    "Meta",
    "Outbox",
    "OutboxEntry",
    "Outcome",
    "QueueItem",
    "QueueState",
    "QueueStats",
    "QueueWork",
    "Rates",
    "Report",
    "Resync",
    "Store",
    "StreamRegistry",
    "Subscriptions",
    "SubscriptionsChanged",
    "TaskDone",
    "Waiter",
    "WakeHub",
    "Wakeups",
    "connect",
    "is_subscription_id",
    "new_subscription_id",
    "now_ms",
]
