"""Who is calling: token verification, roles, scopes and tenant.

``Authenticator.authenticate`` turns an ``Authorization`` header into a
``Principal`` or raises ``Unauthorized``/``Forbidden``; the HTTP layer uses it
as a route dependency (``codeqd.http.deps.requires``), never inline.
"""

from codeqd.auth._principal import ALL_WORKER_SCOPES, Principal, Role, tenant_from_claims
from codeqd.auth._authenticator import Authenticator
from codeqd.auth._dev import load_or_create_dev_secret, mint_dev_token

__all__ = [
    "ALL_WORKER_SCOPES",
    "Authenticator",
    "Principal",
    "Role",
    "load_or_create_dev_secret",
    "mint_dev_token",
    "tenant_from_claims",
]
