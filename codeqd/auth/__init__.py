"""Who is calling: token verification, roles, scopes and tenant.

``Authenticator.authenticate`` turns an ``Authorization`` header into a
``Principal`` or raises ``Unauthorized``/``Forbidden``; the HTTP layer uses it
as a route dependency (``codeqd.http.deps.requires``), never inline. Providers
(``jwks``, ``hs256``, ``static``, ``dev``) live in one private module each.
"""

from codeqd.auth._authenticator import WORKER_AUDIENCE, Authenticator, Verifier
from codeqd.auth._dev import load_or_create_dev_secret, mint_dev_token, state_secret
from codeqd.auth._hs256 import HS256Verifier
from codeqd.auth._jwks import JwksFetchError, JwksKeys, JwksVerifier
from codeqd.auth._jwt import ClaimRules
from codeqd.auth._principal import (
    ALL_TENANTS,
    ALL_WORKER_SCOPES,
    Principal,
    Role,
    tenant_from_claims,
)
from codeqd.auth._static import StaticVerifier

__all__ = [
    "ALL_TENANTS",
    "ALL_WORKER_SCOPES",
    "WORKER_AUDIENCE",
    "Authenticator",
    "ClaimRules",
    "HS256Verifier",
    "JwksFetchError",
    "JwksKeys",
    "JwksVerifier",
    "Principal",
    "Role",
    "StaticVerifier",
    "Verifier",
    "load_or_create_dev_secret",
    "mint_dev_token",
    "state_secret",
    "tenant_from_claims",
]
