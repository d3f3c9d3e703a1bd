"""Webhook signatures (SPEC §3), from the ``codeqd-client`` distribution:
:mod:`codeqd_client.webhooks`. The daemon signs its callbacks with ``sign``;
receivers check them with ``verify``. Both sides share this one implementation.

Re-exported so ``from codeqd import webhooks`` keeps working with the daemon installed.
"""

from codeqd_client.webhooks import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signature,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signature",
    "verify",
]
