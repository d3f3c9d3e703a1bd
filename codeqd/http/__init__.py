"""The HTTP API (Quart-Trio under hypercorn): routes grouped by audience."""

from codeqd.http._serve import serve

__all__ = ["serve"]
