"""The supervisor: starts the actors in order, restarts the ones that fail, stops them all.

Order: the ``store`` actor first (its child must answer before anything else
runs), then the keyspace check, then every other enabled actor. A failing
actor is restarted one-for-one with exponential backoff; more than
``supervisor.max_restarts`` restarts within ``supervisor.window_seconds`` stop
the daemon with exit code 1 so systemd restarts it. SIGTERM/SIGINT: set
``ctx.shutting_down`` (ingress drains, long-polls answer at once, batch actors
finish their step), cancel whatever is left after ``shutdown.grace_seconds``,
then stop the store last; before the daemon is ready there is nothing to
drain and the start-up is abandoned at once. A second signal cancels
everything and kills child processes (``ctx.forced``); the exit code is then
128 + the signal number. SIGHUP reloads the tunables (see
:meth:`Supervisor.reload`).
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from codeqd import config as cfgmod
from codeqd import metrics, sdnotify, tracing
from codeqd.actors import dispatcher, ingress, janitor, notifier, promoter, reaper
from codeqd.actors import metrics as metrics_actor
from codeqd.actors import store as store_actor
from codeqd.auth import Authenticator
from codeqd.context import Context
from codeqd.live import Live
from codeqd.store import WakeHub, connect

log = structlog.get_logger("codeqd.supervisor")

EXIT_OK = 0
EXIT_GAVE_UP = 1
EXIT_CONFIG = 2


@dataclass(frozen=True)
class ActorSpec:
    """An actor: its name, its ``run(ctx, live, *, task_status)`` and the config
    section it reads."""

    name: str
    run: Callable[..., Awaitable[Any]]
    section: Callable[[cfgmod.Config], Any]


def _actor(name: str, run: Callable[..., Awaitable[Any]]) -> ActorSpec:
    return ActorSpec(name, run, lambda c: getattr(c.actors, name))


STORE = _actor("store", store_actor.run)
#: Started after the store answers, in this order; stopped together.
SERVICES: list[ActorSpec] = [
    _actor("promoter", promoter.run),
    _actor("reaper", reaper.run),
    _actor("janitor", janitor.run),
    _actor("metrics", metrics_actor.run),
    _actor("dispatcher", dispatcher.run),
    _actor("notifier", notifier.run),
    _actor("ingress", ingress.run),
]


class GaveUp(Exception):
    """An actor failed more often than the restart intensity allows."""


class Supervisor:
    def __init__(self, config: cfgmod.Config, *, services: list[ActorSpec] | None = None) -> None:
        self.config = config
        self.services = SERVICES if services is None else services
        self.lives: dict[str, Live[Any]] = {
            spec.name: Live(spec.section(config)) for spec in [STORE, *self.services]
        }
        self.restarts: dict[str, int] = {}
        self._restart_times: deque[float] = deque()
        self.ctx: Context | None = None
        self.addresses: list[str] = []
        self.ready = trio.Event()
        self._services_scope: trio.CancelScope | None = None
        self._root_scope: trio.CancelScope | None = None
        #: Around everything the daemon runs; cancelled by a stop signal that comes
        #: before the daemon is ready (connecting, store, keyspace, services starting).
        self._main_scope = trio.CancelScope()
        self.shutting_down = trio.Event()
        self.forced = trio.Event()
        self._forced_by: int | None = None

    # ------------------------------------------------------------ running

    async def run(self) -> int:
        """Run until a signal (exit 0; 128 + signal number when a second signal
        forced the stop) or a give-up (exit 1)."""
        code = EXIT_OK
        try:
            # Signals first: a stop must work while the store is still unreachable.
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async with trio.open_nursery() as top:
                    self._root_scope = top.cancel_scope
                    top.start_soon(self._on_signals, signals)
                    with self._main_scope:
                        await self._main()
                    top.cancel_scope.cancel()  # stops the signal loop
        except* GaveUp as group:
            log.error("supervisor.gave_up", reason=str(_first_leaf(group)))
            sdnotify.notify("STOPPING=1")
            code = EXIT_GAVE_UP
        except* cfgmod.ConfigError as group:
            log.error("supervisor.config_error", error=str(_first_leaf(group)))
            code = EXIT_CONFIG
        except* Exception as group:
            if self._forced_by is None:
                raise
            # Torn down mid-step on purpose (e.g. a pub/sub unsubscribe on a closed
            # connection): expected noise of a forced stop, not a failure.
            log.warning("supervisor.forced_stop_error", error=repr(_first_leaf(group)))
        if self._forced_by is not None and code == EXIT_OK:
            code = 128 + self._forced_by
        log.info("supervisor.stopped", exit_code=code)
        return code

    async def _main(self) -> None:
        """Start the store, check the keyspace, run the services; the start-up part
        is abandoned at once when a stop signal arrives before the daemon is ready."""
        config = self.config
        async with (
            tracing.running(config.tracing),
            connect(config, store_actor.store_url(config)) as client,
        ):
            self.ctx = ctx = Context(
                config=config,
                store=client,
                hub=WakeHub.for_config(config),
                auth=Authenticator(config),
                lives=self.lives,
                shutting_down=self.shutting_down,
                forced=self.forced,
            )
            async with trio.open_nursery() as root:
                await root.start(self._supervise, STORE)
                # The process's one wake-up listener, feeding every actor's inbox.
                await root.start(client.wakeups.run)
                root.start_soon(metrics.flush_every)  # the actors' tallies -> prometheus
                await client.init_keyspace()
                await self._run_services(ctx)
                root.cancel_scope.cancel()  # stops the store actor and the listener

    async def _run_services(self, ctx: Context) -> None:
        async with trio.open_nursery() as services:
            self._services_scope = services.cancel_scope
            for spec in self.services:
                started = await services.start(self._supervise, spec)
                if spec.name == "ingress" and started:
                    self.addresses = list(started)
            log.info(
                "supervisor.ready", addresses=self.addresses, actors=[s.name for s in self.services]
            )
            sdnotify.notify(f"READY=1\nSTATUS=serving on {', '.join(self.addresses) or '-'}")
            self.ready.set()
            if (every := sdnotify.watchdog_interval()) is not None:
                services.start_soon(self._watchdog, ctx, every)
            # From here a stop drains (ingress within the grace itself); the deadline
            # set by _begin_stop is the backstop for the rest.
            await ctx.shutting_down.wait()
            sdnotify.notify("STOPPING=1\nSTATUS=stopping")

    async def _supervise(
        self, spec: ActorSpec, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the actor; on failure log, back off and restart it until the intensity
        limit. ``task_status.started`` carries the actor's first started value."""
        assert self.ctx is not None
        run = spec.run
        first = True
        failures = 0
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    value = await nursery.start(run, self.ctx, self.lives[spec.name])
                    if first:
                        first = False
                        task_status.started(value)
                    failures = 0
                return
            except Exception as e:  # an actor's failure is the supervisor's business
                if isinstance(e, cfgmod.ConfigError) or (
                    isinstance(e, ExceptionGroup) and e.subgroup(cfgmod.ConfigError) is not None
                ):
                    raise  # e.g. a store codeqd cannot work with: restarting will not help
                if self.ctx.shutting_down.is_set() and spec is not STORE:
                    log.warning("actor.failed_during_shutdown", actor=spec.name, exc_info=e)
                    return
                failures += 1
                self._count_restart(spec.name, e)
                delay = min(
                    # The exponent is capped: past 2**1023 the float overflows (an actor
                    # failing to start for hours, restarts spread wider than the window).
                    float(self.config.supervisor.backoff_base) * 2 ** min(failures - 1, 64),
                    float(self.config.supervisor.backoff_max),
                )
                log.error("actor.crashed", actor=spec.name, restart_in=round(delay, 3), exc_info=e)
                await trio.sleep(delay)

    def stale_actors(self, now: float) -> list[str]:
        """Actors that beat (batch loops) but have not within their allowance: a
        wedged actor makes the watchdog stop pinging, so systemd restarts us."""
        stale = []
        for name, live in self.lives.items():
            interval = float(getattr(live.value, "interval", 0) or 0)
            allowance = max(3 * interval, 2 * float(self.config.store.command_timeout), 10.0)
            if live.beat is not None and now - live.beat > allowance:
                stale.append(name)
        return stale

    def status_line(self, ctx: Context) -> str:
        restarts = sum(self.restarts.values())
        return (
            f"serving on {', '.join(self.addresses) or '-'}; "
            f"{ctx.hub.waiting} long-polls waiting; {restarts} actor restarts"
        )

    async def _watchdog(self, ctx: Context, every: float) -> None:
        while not ctx.shutting_down.is_set():
            stale = self.stale_actors(trio.current_time())
            if stale:
                log.error("supervisor.watchdog_withheld", stale=stale)
            else:
                sdnotify.notify(f"WATCHDOG=1\nSTATUS={self.status_line(ctx)}")
            with trio.move_on_after(every):
                await ctx.shutting_down.wait()

    def _count_restart(self, name: str, error: BaseException) -> None:
        # trio's clock, like the backoff sleeps: the window is measured on the same
        # time the restarts are spaced on (and a virtual clock in tests moves both).
        now = trio.current_time()
        window = float(self.config.supervisor.window_seconds)
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] < now - window:
            self._restart_times.popleft()
        self.restarts[name] = self.restarts.get(name, 0) + 1
        metrics.ACTOR_RESTARTS.labels(name).inc()
        if len(self._restart_times) > self.config.supervisor.max_restarts:
            raise GaveUp(
                f"{len(self._restart_times)} actor restarts within {window:g}s "
                f"(last: {name}: {type(error).__name__}: {error})"
            ) from error

    # ------------------------------------------------------------ signals

    async def _on_signals(self, signals: Any) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                self.reload()
            elif self.shutting_down.is_set():
                log.warning("supervisor.forced_stop", signal=name)
                self._forced_by = signum
                self.forced.set()  # child processes are killed, not awaited
                assert self._root_scope is not None
                self._root_scope.cancel()
            else:
                grace = float(self.config.shutdown.grace_seconds)
                log.info(
                    "supervisor.stopping",
                    signal=name,
                    grace_seconds=grace,
                    during_start=not self.ready.is_set(),
                )
                self._begin_stop(grace)

    def _begin_stop(self, grace: float) -> None:
        self.shutting_down.set()
        if not self.ready.is_set():
            self._main_scope.cancel()  # nothing to drain yet: abandon the start-up
        # Whatever state the daemon is in, the stop finishes within the grace.
        if self._services_scope is not None:
            self._services_scope.deadline = trio.current_time() + grace

    def stop(self) -> None:
        """What SIGTERM does, for embedding and tests."""
        self._begin_stop(float(self.config.shutdown.grace_seconds))

    def reload(self) -> None:
        """Re-read the config file; apply actor tunables and the log level live.

        An invalid file is refused and the running config stays; keys that
        cannot change without a restart are named in a warning and keep their
        running values.
        """
        from codeqd import logsetup

        try:
            new = cfgmod.load(self.config.source or None)
        except cfgmod.ConfigError as e:
            log.error("config.reload_refused", error=str(e))
            return
        changed = _changed_keys(cfgmod.as_dict(self.config), cfgmod.as_dict(new))
        for spec in [STORE, *self.services]:
            section = spec.section(new)
            if section != self.lives[spec.name].value:
                self.lives[spec.name].update(section)
        logsetup.configure(new.log)
        restart = [k for k in changed if not _is_live(k)]
        log.info(
            "config.reloaded",
            source=new.source or None,
            applied=[k for k in changed if _is_live(k)],
        )
        if restart:
            log.warning("config.restart_required", keys=restart)


#: Keys under ``actors.`` that cannot change while the daemon runs.
RESTART_ONLY = {
    "actors.ingress.bind",
    "actors.ingress.processes",
    "actors.ingress.keep_alive_timeout",
    "actors.ingress.request_timeout",
    "actors.ingress.h2c",
    "actors.ingress.enabled",
}


def _is_live(key: str) -> bool:
    return (key.startswith("actors.") and key not in RESTART_ONLY) or key.startswith("log.")


def _changed_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _changed_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if a == b else [prefix]


def _first_leaf(error: BaseException) -> BaseException:
    """The first real exception in (possibly nested) nursery exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def serve(config: cfgmod.Config) -> int:
    return await Supervisor(config).run()
