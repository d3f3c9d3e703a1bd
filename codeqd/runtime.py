"""Settings of the Python runtime that every codeqd process makes at start-up."""

from __future__ import annotations

import gc

#: The cyclic garbage collector's thresholds (``gc.set_threshold``). CPython's default
#: (700, 10, 10) runs a young collection every 700 net container allocations; a busy
#: daemon allocates that in well under a millisecond, and every hundredth young
#: collection may become a full one, which walks every live object: 50-100 ms with
#: 1,000 worker streams open. With 10,000, young collections and so full ones are 14x
#: rarer, for at most ~10,000 more young objects held between collections. Measured on
#: the 2-core VM (a streamed drain of 20,000 tasks, two runs each): 2,448-2,642 tasks per
#: daemon CPU-second with the default, 2,817-3,527 with this.
GC_THRESHOLDS = (10_000, 10, 10)


def tune() -> None:
    """Apply this module's settings to the running process."""
    gc.set_threshold(*GC_THRESHOLDS)
