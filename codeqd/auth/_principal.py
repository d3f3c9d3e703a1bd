"""The verified caller, independent of how its token was verified."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from codeqd.domain.errors import Unauthorized

Role = Literal["producer", "worker"]

ALL_WORKER_SCOPES = frozenset(
    {
        "codeq:claim",
        "codeq:heartbeat",
        "codeq:abandon",
        "codeq:nack",
        "codeq:result",
        "codeq:subscribe",
    }
)

TENANT_CLAIMS = ("tenantId", "tenant_id", "organizationId", "organization_id")

#: The tenant of an admin token that may act on every tenant (SPEC §4 admin).
ALL_TENANTS = "*"


def tenant_from_claims(claims: Mapping[str, Any]) -> str:
    """SPEC §4: first present of tenantId, tenant_id, organizationId, organization_id, else sub.

    A tenant claim that is present but not a non-empty string is refused (401 naming
    it), never skipped: falling through to the next claim or to ``sub`` would put the
    caller in a tenant its issuer did not name.
    """
    for name in TENANT_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, str) and value:
            return value
        raise Unauthorized(
            f"token claim {name!r} must be a non-empty string (the tenant id)",
            code="invalid_claim",
            claim=name,
        )
    return str(claims.get("sub") or "")


@dataclass(frozen=True)
class Principal:
    sub: str
    tenant: str
    role: Role
    is_admin: bool = False
    scopes: frozenset[str] = frozenset()
    event_types: tuple[str, ...] = ()
    worker_group: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def identity_hash(self) -> str:
        """sha256 of (tenant, sub, role): rate-limit buckets belong to the verified
        caller, so every token it holds shares them; hashed, so no claim text (braces
        included) ever reaches a store key."""
        role = "admin" if self.is_admin else self.role
        return hashlib.sha256(json.dumps([self.tenant, self.sub, role]).encode()).hexdigest()

    @property
    def all_tenants(self) -> bool:
        """An ADMIN whose tenant is ``*``: admin routes may name any tenant."""
        return self.is_admin and self.tenant == ALL_TENANTS

    def allows_event(self, command: str) -> bool:
        return "*" in self.event_types or command in self.event_types

    def denied_events(self, commands: list[str]) -> list[str]:
        """The commands outside the token's ``eventTypes`` (``*`` allows all): for claims
        and subscriptions, which must ask for a subset."""
        return [c for c in commands if not self.allows_event(c)]
