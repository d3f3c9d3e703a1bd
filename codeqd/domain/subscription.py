"""Worker subscriptions on the wire: validation of create and heartbeat bodies (pure).

Defaults (decided here, documented in docs/webhooks.md): ``eventTypes`` = the token's
eventTypes; ``groupId`` = the token's ``workerGroup`` claim; ``deliveryMode`` =
``group`` when a groupId results, else ``fanout``; ``minIntervalSeconds`` and
``ttlSeconds`` from ``[webhooks]``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codeqd.domain.errors import Forbidden, RateLimited, ValidationError
from codeqd.domain.task import COMMAND_RE, check_webhook, get_int, require_object

DELIVERY_MODES = ("fanout", "group", "hash")
GROUP_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_EVENT_TYPES = 256
MAX_MIN_INTERVAL = 86400


class SubscriptionLimit(RateLimited):
    """429: the worker (``scope = "worker"``) or its tenant (``"tenant"``) already has
    the most live subscriptions ``[webhooks] subscription_max_per_*`` allows. Retry
    after the earliest of them expires, or delete one."""

    code = "subscription_limit"

    def __init__(self, scope: str, most: int, *, retry_after: float) -> None:
        super().__init__(
            f"the {scope} already has {most} live subscriptions, the most allowed "
            f"(webhooks.subscription_max_per_{scope}); delete one or wait for one to expire",
            retry_after=retry_after,
            scope=scope,
            operation="subscribe",
        )
        self.details = {"limit": most}

    def body(self) -> dict[str, Any]:
        return {**super().body(), "details": self.details}


@dataclass(frozen=True)
class NewSubscription:
    callback_url: str
    event_types: list[str]
    delivery_mode: str
    group_id: str
    min_interval_seconds: int
    ttl_seconds: int


def parse_new_subscription(
    body: Any,
    *,
    token_event_types: tuple[str, ...],
    worker_group: str | None,
    default_min_interval: int,
    default_ttl: int,
    max_ttl: int,
) -> NewSubscription:
    body = require_object(body)
    url = check_webhook(body.get("callbackUrl"), "callbackUrl")
    if url is None:
        raise ValidationError("callbackUrl", "is required")
    events = body.get("eventTypes")
    if events is None:
        events = list(token_event_types)
        if not events:
            raise Forbidden("worker token has no eventTypes")
    elif not isinstance(events, list) or not events or len(events) > MAX_EVENT_TYPES:
        raise ValidationError("eventTypes", f"expected a list of 1-{MAX_EVENT_TYPES} command names")
    for e in events:
        if not isinstance(e, str) or not (e == "*" or COMMAND_RE.match(e)):
            raise ValidationError("eventTypes", "each must be a command name or '*'")
    events = list(dict.fromkeys(events))
    if "*" not in token_event_types:
        denied = [e for e in events if e not in token_event_types]
        if denied:
            raise Forbidden(
                f"token's eventTypes do not include {', '.join(denied)}", eventTypes=denied
            )
    group = body.get("groupId")
    if group is None or group == "":
        group = worker_group or ""
    elif not isinstance(group, str) or not GROUP_RE.match(group):
        raise ValidationError("groupId", "must be 1-128 characters of [A-Za-z0-9_.:-]")
    mode = body.get("deliveryMode")
    if mode is None or mode == "":
        mode = "group" if group else "fanout"
    elif mode not in DELIVERY_MODES:
        raise ValidationError("deliveryMode", "must be 'fanout', 'group' or 'hash'")
    if mode == "group" and not group:
        raise ValidationError(
            "groupId", "is required with deliveryMode 'group' (or a workerGroup claim in the token)"
        )
    interval = get_int(body, "minIntervalSeconds", default_min_interval, 0, MAX_MIN_INTERVAL)
    ttl = get_int(body, "ttlSeconds", default_ttl, 1, max_ttl)
    assert interval is not None and ttl is not None
    return NewSubscription(url, events, mode, group, interval, ttl)


def parse_heartbeat(body: Any, *, max_ttl: int) -> int:
    """``ttlSeconds`` of a heartbeat body, or 0 for the subscription's own TTL."""
    return get_int(require_object(body), "ttlSeconds", 0, 1, max_ttl) or 0


def matches(sub: dict[str, Any], command: str) -> bool:
    events = sub.get("eventTypes") or []
    return "*" in events or command in events


@dataclass(frozen=True)
class PickUnit:
    """One choice of at most one subscription: a fanout subscription alone, a group
    (``round_robin`` set) or a hash group (subscriptions in rendezvous order)."""

    subs: Sequence[dict[str, Any]]
    round_robin: str | None = None  # the group's key part; None: scan in the given order


def plan(subs: list[dict[str, Any]], queue: str) -> list[PickUnit]:
    """The choice units for one event of ``queue`` (see the store's ``sub_pick.lua``):
    each fanout subscription alone, then one unit per group (round robin), then one per
    hash group, its members in rendezvous order for ``queue`` (highest weight first)."""
    units: list[PickUnit] = []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    hashed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sub in sorted(subs, key=lambda s: s["id"]):
        mode = sub.get("deliveryMode", "fanout")
        if mode == "group":
            groups[sub.get("groupId", "")].append(sub)
        elif mode == "hash":
            hashed[sub.get("groupId", "")].append(sub)
        else:
            units.append(PickUnit([sub]))
    units += [PickUnit(members, round_robin=group) for group, members in groups.items()]

    def weight(sub: dict[str, Any]) -> bytes:
        return hashlib.sha256(f"{queue}|{sub['id']}".encode()).digest()

    units += [PickUnit(sorted(members, key=weight, reverse=True)) for members in hashed.values()]
    return units
