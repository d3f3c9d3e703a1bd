"""What the actors share: the config, the store client, the wake-up hub, auth.

Built once by the supervisor; nothing in it is mutable except through the
store, and ``shutting_down``/``forced`` which the supervisor sets when a stop
begins / is forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from codeqd.auth import Authenticator
from codeqd.config import Config
from codeqd.live import Live
from codeqd.store import Store, WakeHub


@dataclass
class Context:
    config: Config
    store: Store
    hub: WakeHub
    auth: Authenticator
    shutting_down: trio.Event = field(default_factory=trio.Event)
    #: Set by a second stop signal: child processes are killed instead of awaited.
    forced: trio.Event = field(default_factory=trio.Event)
    #: Each actor's live config section (set by the supervisor; SIGHUP updates them).
    lives: dict[str, Live[Any]] = field(default_factory=dict)

    def actor_config(self, name: str) -> Any:
        """An actor's config section as it is now (after any SIGHUP reload)."""
        live = self.lives.get(name)
        return live.value if live is not None else getattr(self.config.actors, name)
