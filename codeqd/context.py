"""What the actors share: the config, the store client, the wake-up hub, auth.

Built once by the supervisor; nothing in it is mutable except through the
store, and ``shutting_down`` which the supervisor sets when a stop begins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from codeqd.auth import Authenticator
from codeqd.config import Config
from codeqd.store import Store, WakeHub


@dataclass
class Context:
    config: Config
    store: Store
    hub: WakeHub
    auth: Authenticator
    shutting_down: trio.Event = field(default_factory=trio.Event)
