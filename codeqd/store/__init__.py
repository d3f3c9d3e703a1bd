"""The only code that speaks to the store (KVRocks or Redis).

One method of ``Store`` per Lua transition, key names built in ``_keys``,
scripts in ``lua/``. ``WakeHub`` turns the store's pub/sub wake-ups into trio
events for long-polling requests.
"""

from codeqd.store._store import Store, connect, now_ms
from codeqd.store._wakeups import WakeHub

__all__ = ["Store", "WakeHub", "connect", "now_ms"]
