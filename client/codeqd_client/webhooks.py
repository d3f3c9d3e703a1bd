"""Webhook signatures: ``sign`` (used by codeqd when it calls back) and ``verify`` (for
receivers), so both sides share one implementation of SPEC §3.

The signature is the hex HMAC-SHA256, keyed with ``webhooks.hmac_secret``, of
``timestamp + "." + body``, where ``timestamp`` is the ``X-CodeQ-Timestamp``
header (unix seconds) and ``body`` the raw request body bytes. Receivers::

    from codeqd_client import webhooks  # or, with the daemon installed: from codeqd import webhooks
    ok = webhooks.verify(SECRET, body, headers["X-CodeQ-Timestamp"], headers["X-CodeQ-Signature"])
    if not ok: return 401
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-CodeQ-Timestamp"
SIGNATURE_HEADER = "X-CodeQ-Signature"
DEFAULT_TOLERANCE = 300


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def signature(secret: bytes | str, body: bytes | str, timestamp: int | str) -> str:
    """The hex HMAC-SHA256 of ``timestamp.body``."""
    message = str(timestamp).encode() + b"." + _bytes(body)
    return hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes | str, *, now: float | None = None) -> dict[str, str]:
    """The two signature headers for ``body`` sent at ``now`` (default: the current time)."""
    ts = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(secret, body, ts)}


def verify(
    secret: bytes | str,
    body: bytes | str,
    timestamp: str | int | None,
    signature_hex: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when ``signature_hex`` signs ``timestamp.body`` with ``secret`` and the
    timestamp is within ``tolerance`` seconds of ``now`` (either side, for clock skew).

    ``body`` must be the raw bytes received, before any JSON parsing. Missing or
    malformed headers give False, never an exception; the comparison is constant-time.
    """
    if timestamp is None or signature_hex is None or not secret:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = signature(secret, body, ts)
    return hmac.compare_digest(expected, signature_hex.strip().lower())


__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signature",
    "verify",
]
