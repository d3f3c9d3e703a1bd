"""codeqd: a task queue daemon with leases, retries, delays, dead letters and callbacks.

The public surface is small: the daemon (``codeqd run``), the HTTP API and, for
Python users, :mod:`codeqd.client`.
"""

from codeqd._version import __version__

__all__ = ["__version__"]
