"""The Python client, from the ``codeqd-client`` distribution (package :mod:`codeqd_client`).

The daemon depends on that distribution and re-exports it here, so
``from codeqd.client import Producer`` keeps working; an application that needs
only the client installs ``codeqd-client`` (httpx and anyio) and imports
``codeqd_client``. See docs/client.md.
"""

from codeqd_client import *  # noqa: F403 - the same names, re-exported
from codeqd_client import __all__ as __all__
