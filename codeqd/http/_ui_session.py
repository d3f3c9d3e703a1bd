"""The dashboard's session: a signed cookie naming the admin a token was verified for,
and the CSRF token derived from it. The token itself is never stored, logged or put
in a URL; only its identity (sub, tenant) and expiry are signed into the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer

from codeqd.auth import state_secret
from codeqd.config import Config

COOKIE = "codeqd_ui"
SECRET_FILE = "ui_secret"
_SALT = "codeqd-ui-session"
_DEV_SALT = "codeqd-ui-dev-login"
#: How long a dev login link works.
DEV_TICKET_SECONDS = 600


def load_or_create_secret(config: Config) -> str:
    """``ui.session_secret``, else the one in state_dir, created on first use."""
    return state_secret(config, config.ui.session_secret, SECRET_FILE)


@dataclass(frozen=True)
class Session:
    """A logged-in admin: ``tenant`` is ``*`` for an admin of every tenant."""

    sub: str
    tenant: str
    expires: int  # unix seconds
    sid: str  # random per login: CSRF tokens of one login do not work for another

    @property
    def all_tenants(self) -> bool:
        return self.tenant == "*"


class Sessions:
    """Signs and reads session cookies and CSRF tokens with the dashboard's secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._secret = secret.encode()
        self._serializer = URLSafeSerializer(secret, salt=_SALT)

    def issue(self, sub: str, tenant: str, expires: int) -> tuple[Session, str]:
        session = Session(sub, tenant, expires, secrets.token_urlsafe(16))
        value = self._serializer.dumps(
            {"sub": sub, "tenant": tenant, "exp": expires, "sid": session.sid}
        )
        return session, value

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The cookie's session, or None when absent, forged or expired."""
        if not cookie:
            return None
        try:
            data: Any = self._serializer.loads(cookie)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        try:
            session = Session(str(data["sub"]), str(data["tenant"]), int(data["exp"]), data["sid"])
        except (KeyError, TypeError, ValueError):
            return None
        return session if session.expires > now else None

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, f"csrf|{session.sid}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), token or "")


def mint_dev_login_ticket(config: Config, sub: str = "dev-admin", tenant: str = "*") -> str:
    """A dev-mode one-click login ticket (``/ui/login/dev?ticket=``): an admin session
    for ``sub``/``tenant``, honoured for ``DEV_TICKET_SECONDS``, only in auth.mode dev
    and only from a loopback address. It cannot call the API: it is not a token."""
    serializer = URLSafeTimedSerializer(load_or_create_secret(config), salt=_DEV_SALT)
    return serializer.dumps({"sub": sub, "tenant": tenant})


def read_dev_login_ticket(secret: str, ticket: str) -> tuple[str, str] | None:
    """(sub, tenant) of a valid, unexpired ticket, else None."""
    serializer = URLSafeTimedSerializer(secret, salt=_DEV_SALT)
    try:
        data: Any = serializer.loads(ticket, max_age=DEV_TICKET_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sub"), str):
        return None
    tenant = data.get("tenant")
    return (data["sub"], tenant) if isinstance(tenant, str) and tenant else None
