"""Dev mode: HS256 tokens minted by ``codeqd token`` with a secret kept in state_dir."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Literal

import jwt

from codeqd.auth._principal import ALL_WORKER_SCOPES
from codeqd.config import Config

DEV_SECRET_FILE = "dev_secret"


def load_or_create_dev_secret(config: Config) -> str:
    """The configured ``auth.dev_secret``, else the one in state_dir, created on first use."""
    if config.auth.dev_secret:
        return config.auth.dev_secret
    path = Path(config.state_dir) / DEV_SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    # O_EXCL: two processes starting at once agree on the first one written.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def mint_dev_token(
    secret: str,
    role: Literal["producer", "worker", "admin"],
    *,
    sub: str | None = None,
    tenant: str = "default",
    events: list[str] | None = None,
    ttl: int = 3600,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub or f"dev-{role}",
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "iss": "codeqd-dev",
        "tenantId": tenant,
    }
    if role == "worker":
        claims["aud"] = ["codeq-worker"]
        claims["eventTypes"] = events or ["*"]
        claims["scope"] = " ".join(sorted(ALL_WORKER_SCOPES))
    else:
        claims["aud"] = ["codeq-producer"]
        if role == "admin":
            claims["role"] = "ADMIN"
    return jwt.encode(claims, secret, algorithm="HS256")
