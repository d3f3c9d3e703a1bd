"""codeqd: a task queue daemon with leases, retries, delays, dead letters and callbacks.

The public surface is small: the daemon (``codeqd run``), the HTTP API, for
Python users :mod:`codeqd.client`, and for callback receivers
:mod:`codeqd.webhooks` (``codeqd.webhooks.verify``).
"""

from codeqd import webhooks
from codeqd._version import __version__

__all__ = ["__version__", "webhooks"]
