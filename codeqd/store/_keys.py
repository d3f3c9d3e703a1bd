"""Every key name, in one place.

Layout (``T`` = ``<prefix>:{<shard>}``, the hash tag that keeps a shard's keys in
one cluster slot; ``ten`` = tenant, escaped so it never contains ``:``, ``|``,
``{`` or ``}``):

    T:task      hash  ten|id -> task metadata (JSON, edited by the scripts)
    T:payload   hash  ten|id -> payload JSON, as the producer sent it
    T:result    hash  ten|id -> Result JSON
    T:seq       counter giving FIFO order within a priority
    T:delayed   zset  ten|cmd|id by runAt         (promoter's index)
    T:leases    zset  ten|cmd|id by lease expiry  (reaper's index)
    T:done      zset  ten|cmd|id by finish time   (janitor's retention index)
    T:outbox    zset  ten|cmd|id by due time      (result callbacks to send; an entry
                      being sent carries its lease deadline as its score)
    T:outbox:att hash ten|cmd|id -> delivery attempts so far (the fencing token)
    T:outbox:low string  the outbox's low-water mark: no entry has a lower score. Claims
                      read from it on (on KVRocks a read from -inf walks every entry
                      removed since the last compaction); every script that adds an
                      entry lowers it first if it must, and a claim reads from -inf
                      once a minute (``Outbox.SWEEP_SECONDS``). Built from T:outbox in the
                      scripts (``outbox_add`` in lua/_lib.lua), so in the same slot
    T:counts    hash  ten|cmd|delayed, ten|cmd|inprog -> int
    T:queues    set   ten|cmd of every queue on the shard
    T:paused    set   ten|cmd of paused queues
    T:cmds:ten  set   commands the tenant has used
    T:avail:ten zset  command -> score of its ready head: the tenant's claimable queues
                      (non-empty, not paused), kept in step by every script that
                      changes a ready set; claims walk it instead of every queue
    T:q:ten:cmd:ready  zset id by (9 - priority) * 1e14 + seq
    T:q:ten:cmd:dlq    zset id by dead-letter time
    T:idem:ten:key     string -> task id, expires after the idempotency window
    T:ev:ten:id        list   the task's last 50 events (short JSON arrays), appended by
                       each script that changes the task, in the same step; deleted with
                       the task. Only what the record cannot tell: a task created,
                       claimed once and finished by its worker has none (``told`` in
                       lua/_lib.lua). The scripts build this name from T:task
                       (``events_key`` in lua/_lib.lua): a claim learns its tasks' ids
                       only as it pops them, and the key shares the tag, so the slot, of
                       T:task
    T:rate:ten:minute  hash   c, d, f, x -> tasks the tenant created, completed, failed
                       (a FAILED result) and dead-lettered on the shard in that minute
                       (ms // 60000, by the script's clock), counted by the scripts that
                       make those transitions, in the same step; expires 2 hours after its
                       first count. Built from T:task like T:ev (``rate_key`` in
                       lua/_lib.lua); the dashboard's rates read the last hour's

Pub/sub channels (no hash tag: a cluster broadcasts PUBLISH to every node):
``<prefix>:wake:<shard>`` carries ``N:ten|cmd`` when N tasks of a queue became
claimable on that shard (``<prefix>:wake`` when the shard is not known: any
shard); ``<prefix>:done`` carries ``ten|id`` lines of tasks that became terminal.

Worker subscriptions live under their own tag (``S`` = ``<prefix>:{<prefix>:subs}``):

    S:sub:ten:id        string  subscription JSON, expires with it
    S:idx:ten           zset    id by expiresAt (the tenant's live subscriptions)
    S:widx:ten:worker   zset    id by expiresAt (one worker's, for its cap)
    S:throttle:ten:id   string  present while the subscription's minInterval runs
    S:rr:ten:cmd:group  counter round-robin position of a group (expires when idle)
    S:ev:ten:cmd        string  present while a queue's notification is de-duplicated

Open worker streams, for the dashboard (``W`` = ``<prefix>:{<prefix>:streams}``):

    W:s:ten:id          string  the stream's record (JSON), expires unless refreshed
    W:idx:ten           zset    id by expiry (the tenant's live streams)

Task metadata lives in per-shard hashes rather than a key per task so that
every script touches only keys it is given in KEYS, even when the caller knows
nothing but the task id.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@lru_cache(maxsize=4096)
def escape_tenant(tenant: str) -> str:
    """Injective and free of ``: | { }``; plain tenants stay readable."""
    if _SAFE.fullmatch(tenant):
        return tenant
    return (
        "~"
        + "".join(
            c if (c.isascii() and (c.isalnum() or c in "_.-")) else f"%{ord(c):x};" for c in tenant
        )[:200]
        + "~"
        + hashlib.sha256(tenant.encode()).hexdigest()[:16]
    )


@dataclass(frozen=True)
class ShardKeys:
    tag: str
    #: The wake-up channel of this shard (a channel name, not a key).
    wake: str

    @property
    def task(self) -> str:
        return f"{self.tag}:task"

    @property
    def payload(self) -> str:
        return f"{self.tag}:payload"

    @property
    def result(self) -> str:
        return f"{self.tag}:result"

    @property
    def artifacts(self) -> str:
        """Inline artifacts of results: field ``tenant|id|name``, value the content."""
        return f"{self.tag}:artifacts"

    @property
    def seq(self) -> str:
        return f"{self.tag}:seq"

    @property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    @property
    def leases(self) -> str:
        return f"{self.tag}:leases"

    @property
    def done(self) -> str:
        return f"{self.tag}:done"

    @property
    def outbox(self) -> str:
        return f"{self.tag}:outbox"

    @property
    def outbox_attempts(self) -> str:
        return f"{self.tag}:outbox:att"

    @property
    def counts(self) -> str:
        return f"{self.tag}:counts"

    @property
    def queues(self) -> str:
        return f"{self.tag}:queues"

    @property
    def paused(self) -> str:
        return f"{self.tag}:paused"

    def cmds(self, ten: str) -> str:
        return f"{self.tag}:cmds:{ten}"

    def avail(self, ten: str) -> str:
        return f"{self.tag}:avail:{ten}"

    def ready(self, ten: str, cmd: str) -> str:
        return f"{self.tag}:q:{ten}:{cmd}:ready"

    def dlq(self, ten: str, cmd: str) -> str:
        return f"{self.tag}:q:{ten}:{cmd}:dlq"

    def events(self, ten: str, task_id: str) -> str:
        """The task's event list (the same name ``events_key`` builds in lua/_lib.lua)."""
        return f"{self.tag}:ev:{ten}:{task_id}"

    def rate(self, ten: str, minute: int) -> str:
        """The tenant's counts of one minute (``ms // 60000``; ``rate_key`` in lua/_lib.lua)."""
        return f"{self.tag}:rate:{ten}:{minute}"

    def idem(self, ten: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        return f"{self.tag}:idem:{ten}:{digest}"


@dataclass(frozen=True)
class SubscriptionKeys:
    tag: str

    def sub(self, ten: str, sub_id: str) -> str:
        return f"{self.tag}:sub:{ten}:{sub_id}"

    def index(self, ten: str) -> str:
        return f"{self.tag}:idx:{ten}"

    def worker_index(self, ten: str, worker: str) -> str:
        return f"{self.tag}:widx:{ten}:{escape_tenant(worker)}"

    def throttle(self, ten: str, sub_id: str) -> str:
        return f"{self.tag}:throttle:{ten}:{sub_id}"

    def round_robin(self, ten: str, cmd: str, group: str) -> str:
        return f"{self.tag}:rr:{ten}:{cmd}:{group}"

    def event(self, ten: str, cmd: str) -> str:
        return f"{self.tag}:ev:{ten}:{cmd}"


@dataclass(frozen=True)
class StreamKeys:
    tag: str

    def record(self, ten: str, stream_id: str) -> str:
        return f"{self.tag}:s:{ten}:{stream_id}"

    def index(self, ten: str) -> str:
        return f"{self.tag}:idx:{ten}"


class Keys:
    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards
        self._shards = [
            ShardKeys(f"{prefix}:{{{prefix}:{s}}}", f"{prefix}:wake:{s}") for s in range(shards)
        ]
        self.meta = f"{prefix}:{{{prefix}:meta}}"
        self.wake_channel = f"{prefix}:wake"  # any shard
        self.done_channel = f"{prefix}:done"
        self.subs = SubscriptionKeys(f"{prefix}:{{{prefix}:subs}}")
        self.subs_channel = f"{prefix}:subs"
        self.streams = StreamKeys(f"{prefix}:{{{prefix}:streams}}")

    def shard(self, s: int) -> ShardKeys:
        return self._shards[s]

    def all(self) -> list[ShardKeys]:
        return self._shards


def field(ten: str, task_id: str) -> str:
    return f"{ten}|{task_id}"


def member(ten: str, cmd: str, task_id: str) -> str:
    return f"{ten}|{cmd}|{task_id}"


def qname(ten: str, cmd: str) -> str:
    return f"{ten}|{cmd}"


def split_member(value: str) -> tuple[str, str, str]:
    ten, cmd, task_id = value.split("|", 2)
    return ten, cmd, task_id
