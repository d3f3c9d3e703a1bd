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
    return state_secret(config, config.auth.dev_secret, DEV_SECRET_FILE)


def state_secret(config: Config, configured: str, filename: str) -> str:
    """``configured`` when set, else the secret in ``state_dir/filename``, created on
    first use (O_EXCL: processes of one state_dir starting at once agree on the first
    one written)."""
    if configured:
        return configured
    path = Path(config.state_dir) / filename
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
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
