"""The HTTP API (Quart-Trio under hypercorn): routes grouped by audience."""

from codeqd.http._serve import serve
from codeqd.http._ui_session import mint_dev_login_ticket

__all__ = ["mint_dev_login_ticket", "serve"]
