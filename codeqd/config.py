"""Configuration: one TOML file plus ``CODEQD_<SECTION>__<KEY>`` environment overrides.

Every section is a frozen dataclass; loading validates types and ranges and
names the offending key, so ``codeqd check-config`` can print a one-line error.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from codeqd.domain.backoff import BackoffPolicy, Seconds

DEFAULT_PATHS = (Path("codeqd.toml"), Path("/etc/codeqd/codeqd.toml"))
ENV_PREFIX = "CODEQD_"
#: Read by the CLI's client commands and by ``find_config_path``; not config keys.
_CLIENT_ENV = ("CODEQD_URL", "CODEQD_TOKEN", "CODEQD_CONFIG")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


class Duration(Seconds):
    """Seconds, written as a number or as ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``, ``"1d"``."""

    _UNITS: typing.ClassVar[dict[str, float]] = {
        "ms": 0.001,
        "s": 1.0,
        "m": 60.0,
        "h": 3600.0,
        "d": 86400.0,
    }
    _RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")

    @classmethod
    def parse(cls, value: object, key: str) -> Duration:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a duration, got {value!r}")
        if isinstance(value, int | float):
            if value < 0:
                raise ConfigError(f"{key}: duration must not be negative")
            return cls(value)
        if isinstance(value, str):
            m = cls._RE.match(value)
            if m:
                return cls(float(m.group(1)) * cls._UNITS[m.group(2) or "s"])
        raise ConfigError(
            f"{key}: expected a duration like '250ms', '5s', '2m' or seconds, got {value!r}"
        )


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be greater than 0")


@dataclass(frozen=True)
class StoreConfig:
    mode: Literal["embedded", "external"] = "embedded"
    url: str = ""
    cluster: bool = False
    shards: int = 1
    prefix: str = "codeq"
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    server_bin: str = "redis-server"
    connect_timeout: Duration = Duration(2)
    command_timeout: Duration = Duration(5)
    max_connections: int = 64
    #: Bounds on one script call's work, whatever the data: tasks per call (claims,
    #: batch creates and results are split into calls of at most this many) and
    #: queues a claim looks at per call.
    script_items: int = 100
    claim_queues: int = 64

    def validate(self) -> None:
        if not 1 <= self.script_items <= 1000:
            raise ConfigError("store.script_items: must be between 1 and 1000")
        if not 1 <= self.claim_queues <= 256:
            raise ConfigError("store.claim_queues: must be between 1 and 256")
        if not 1 <= self.shards <= 256:
            raise ConfigError("store.shards: must be between 1 and 256")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", self.prefix):
            raise ConfigError("store.prefix: 1-32 characters of [A-Za-z0-9_.-]")
        if self.mode == "external" and not self.url:
            raise ConfigError("store.url: required when store.mode = 'external'")
        if self.url and not re.match(r"^(redis|rediss|unix|redis\+cluster)://", self.url):
            raise ConfigError(
                "store.url: must start with redis://, rediss://, unix:// or redis+cluster://"
            )
        _positive("store.max_connections", self.max_connections)


@dataclass(frozen=True)
class ProviderConfig:
    provider: Literal["jwks", "hs256", "static", "dev"] = "dev"
    jwks_url: str = ""
    issuer: str = ""
    audience: str = ""
    secret: str = ""
    tokens: list[str] = field(default_factory=list)
    algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    jwks_cache_ttl: Duration = Duration(300)
    jwks_refresh_cooldown: Duration = Duration(30)
    jwks_timeout: Duration = Duration(5)

    def validate(self, key: str, mode: str) -> None:
        if mode != "jwt":
            return
        if self.provider == "jwks":
            if not self.jwks_url:
                raise ConfigError(f"{key}.jwks_url: required when provider = 'jwks'")
            if not re.match(r"^https://", self.jwks_url) and not re.match(
                r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/", self.jwks_url
            ):
                raise ConfigError(f"{key}.jwks_url: must be https:// (plain http only on loopback)")
            allowed = {
                "RS256",
                "RS384",
                "RS512",
                "PS256",
                "PS384",
                "PS512",
                "ES256",
                "ES384",
                "ES512",
                "EdDSA",
            }
            bad = [a for a in self.algorithms if a not in allowed]
            if bad or not self.algorithms:
                raise ConfigError(
                    f"{key}.algorithms: asymmetric algorithms only ({', '.join(sorted(allowed))})"
                )
            _positive(f"{key}.jwks_timeout", self.jwks_timeout)
        if self.provider == "hs256" and len(self.secret.encode()) < 32:
            raise ConfigError(f"{key}.secret: provider 'hs256' needs a secret of at least 32 bytes")
        if self.provider == "static" and not self.tokens:
            raise ConfigError(f"{key}.tokens: provider 'static' needs at least one token")


@dataclass(frozen=True)
class AuthConfig:
    mode: Literal["dev", "jwt"] = "dev"
    dev_secret: str = ""
    allow_producer_as_worker: bool = False
    clock_skew: Duration = Duration(60)
    producer: ProviderConfig = field(default_factory=ProviderConfig)
    worker: ProviderConfig = field(default_factory=ProviderConfig)

    def validate(self) -> None:
        self.producer.validate("auth.producer", self.mode)
        self.worker.validate("auth.worker", self.mode)


@dataclass(frozen=True)
class RateBucket:
    """A token bucket: ``rate`` requests per second on average, bursts up to ``burst``."""

    rate: float = 50.0
    burst: int = 100


@dataclass(frozen=True)
class RateLimitConfig:
    """Per verified caller (tenant, sub, role) limits on the costly operations, one
    token per item; off by default."""

    enabled: bool = False
    create: RateBucket = field(default_factory=RateBucket)
    claim: RateBucket = field(default_factory=lambda: RateBucket(rate=100.0, burst=200))
    cleanup: RateBucket = field(default_factory=lambda: RateBucket(rate=0.2, burst=2))

    def validate(self) -> None:
        for name in ("create", "claim", "cleanup"):
            bucket: RateBucket = getattr(self, name)
            _positive(f"ratelimit.{name}.rate", bucket.rate)
            if not 1 <= bucket.burst <= 1_000_000:
                raise ConfigError(f"ratelimit.{name}.burst: must be between 1 and 1000000")


@dataclass(frozen=True)
class IngressConfig:
    enabled: bool = True
    bind: str = "127.0.0.1:8080"
    processes: int | Literal["auto"] = "auto"
    max_waiters: int = 10000
    backlog: int = 4096
    keep_alive_timeout: Duration = Duration(75)
    request_timeout: Duration = Duration(60)
    poll_fallback: Duration = Duration(5)
    h2c: bool = False
    fast_routes: bool = True

    def validate(self) -> None:
        if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}|unix:.+", self.bind):
            raise ConfigError(
                f"actors.ingress.bind: expected host:port or unix:/path, got {self.bind!r}"
            )
        if self.processes != "auto" and not 1 <= int(self.processes) <= 64:
            raise ConfigError("actors.ingress.processes: 1..64 or 'auto'")
        _positive("actors.ingress.max_waiters", self.max_waiters)
        if not 16 <= self.backlog <= 65535:
            raise ConfigError("actors.ingress.backlog: must be between 16 and 65535")


@dataclass(frozen=True)
class LoopActorConfig:
    """An actor that works in bounded batches and sleeps ``interval`` when idle."""

    enabled: bool = True
    interval: Duration = Duration(1)
    batch: int = 500


@dataclass(frozen=True)
class PromoterConfig(LoopActorConfig):
    interval: Duration = Duration(0.25)


@dataclass(frozen=True)
class ReaperConfig(LoopActorConfig):
    interval: Duration = Duration(1)


@dataclass(frozen=True)
class JanitorConfig(LoopActorConfig):
    interval: Duration = Duration(30)


@dataclass(frozen=True)
class MetricsConfig(LoopActorConfig):
    interval: Duration = Duration(15)
    batch: int = 1000


@dataclass(frozen=True)
class DispatcherConfig(LoopActorConfig):
    """Result callbacks: drains the outbox; ``interval`` is the poll fallback when no
    wake-up arrives, ``batch`` the most entries claimed per round."""

    interval: Duration = Duration(1)
    batch: int = 256
    concurrency: int = 64
    timeout: Duration = Duration(10)
    max_attempts: int = 5
    base_backoff: Duration = Duration(2)
    max_backoff: Duration = Duration(60)

    def validate(self) -> None:
        if not 1 <= self.concurrency <= 10_000:
            raise ConfigError("actors.dispatcher.concurrency: must be between 1 and 10000")
        _positive("actors.dispatcher.timeout", self.timeout)
        if not 1 <= self.max_attempts <= 100:
            raise ConfigError("actors.dispatcher.max_attempts: must be between 1 and 100")
        _positive("actors.dispatcher.base_backoff", self.base_backoff)
        if self.max_backoff < self.base_backoff:
            raise ConfigError("actors.dispatcher.max_backoff: must be >= base_backoff")


@dataclass(frozen=True)
class NotifierConfig:
    """Worker-availability notifications: best effort, bounded, never retried."""

    enabled: bool = True
    interval: Duration = Duration(5)
    concurrency: int = 64
    tenant_concurrency: int = 16
    tenant_queue: int = 256
    timeout: Duration = Duration(2)
    dedup_window: Duration = Duration(0.1)

    def validate(self) -> None:
        _positive("actors.notifier.interval", self.interval)
        if not 1 <= self.concurrency <= 10_000:
            raise ConfigError("actors.notifier.concurrency: must be between 1 and 10000")
        if not 1 <= self.tenant_concurrency <= 10_000:
            raise ConfigError("actors.notifier.tenant_concurrency: must be between 1 and 10000")
        if not 1 <= self.tenant_queue <= 100_000:
            raise ConfigError("actors.notifier.tenant_queue: must be between 1 and 100000")
        _positive("actors.notifier.timeout", self.timeout)


@dataclass(frozen=True)
class StoreActorConfig:
    interval: Duration = Duration(1)
    start_timeout: Duration = Duration(20)


@dataclass(frozen=True)
class ActorsConfig:
    store: StoreActorConfig = field(default_factory=StoreActorConfig)
    ingress: IngressConfig = field(default_factory=IngressConfig)
    promoter: PromoterConfig = field(default_factory=PromoterConfig)
    reaper: ReaperConfig = field(default_factory=ReaperConfig)
    janitor: JanitorConfig = field(default_factory=JanitorConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    dispatcher: DispatcherConfig = field(default_factory=DispatcherConfig)
    notifier: NotifierConfig = field(default_factory=NotifierConfig)


@dataclass(frozen=True)
class LimitsConfig:
    body_bytes: int = 1024 * 1024
    batch_max: int = 1000
    max_lease_seconds: int = 86400
    max_payload_depth: int = 64
    artifact_bytes: int = 512 * 1024
    header_bytes: int = 16 * 1024


@dataclass(frozen=True)
class BackoffConfig(BackoffPolicy):
    commands: dict[str, BackoffPolicy] = field(default_factory=dict)

    def for_command(self, command: str) -> BackoffPolicy:
        return self.commands.get(command, self)


@dataclass(frozen=True)
class TasksConfig:
    default_max_attempts: int = 5
    default_lease_seconds: int = 300
    retention: Duration = Duration(86400)
    idempotency_ttl: Duration = Duration(86400)


@dataclass(frozen=True)
class WebhooksConfig:
    hmac_secret: str = ""
    deny_private_networks: bool = True
    public_url: str = ""
    subscription_ttl: Duration = Duration(300)
    subscription_max_ttl: Duration = Duration(86400)
    subscription_min_interval: Duration = Duration(5)
    subscription_max_per_worker: int = 100
    subscription_max_per_tenant: int = 1000

    def validate(self) -> None:
        if self.public_url and not re.match(r"^https?://[^\s/?#]+[^\s?#]*$", self.public_url):
            raise ConfigError("webhooks.public_url: expected an http:// or https:// base URL")
        _positive("webhooks.subscription_ttl", self.subscription_ttl)
        if self.subscription_max_ttl < self.subscription_ttl:
            raise ConfigError("webhooks.subscription_max_ttl: must be >= subscription_ttl")
        for key in ("subscription_max_per_worker", "subscription_max_per_tenant"):
            if not 1 <= getattr(self, key) <= 1_000_000:
                raise ConfigError(f"webhooks.{key}: must be between 1 and 1000000")


@dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry spans (SPEC §8), sent with the OTLP/HTTP exporter; off by default."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: dict[str, str] = field(default_factory=dict)
    sample_ratio: float = 1.0
    service_name: str = "codeqd"

    def validate(self) -> None:
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", self.endpoint):
            raise ConfigError("tracing.endpoint: expected an http:// or https:// URL")
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ConfigError("tracing.sample_ratio: must be between 0 and 1")
        if not self.service_name:
            raise ConfigError("tracing.service_name: must not be empty")


@dataclass(frozen=True)
class UIConfig:
    """The operator's dashboard at ``/ui/`` (SPEC §7)."""

    enabled: bool = True
    # A session ends with its admin token's ``exp``, or after this, whichever is first.
    session_ttl: Duration = Duration(12 * 3600)
    # Signs session cookies and CSRF tokens; "" = generated into state_dir (ui_secret).
    session_secret: str = ""
    # How often an open page refreshes its counts (short polling); 0 turns it off.
    refresh_interval: Duration = Duration(5)


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True)
class ShutdownConfig:
    grace_seconds: Duration = Duration(10)


@dataclass(frozen=True)
class StreamsConfig:
    """Worker streams (``GET /v1/codeq/workers/stream``, SPEC §6)."""

    enabled: bool = True
    on_disconnect: Literal["abandon", "expire"] = "abandon"
    ping_interval: Duration = Duration(20)
    ping_timeout: Duration = Duration(20)
    hello_timeout: Duration = Duration(10)
    max_streams: int = 10000
    max_in_flight: int = 1000
    send_buffer: int = 64

    def validate(self) -> None:
        _positive("streams.ping_interval", self.ping_interval)
        _positive("streams.ping_timeout", self.ping_timeout)
        _positive("streams.hello_timeout", self.hello_timeout)
        if not 1 <= self.max_streams <= 1_000_000:
            raise ConfigError("streams.max_streams: must be between 1 and 1000000")
        if not 1 <= self.max_in_flight <= 100_000:
            raise ConfigError("streams.max_in_flight: must be between 1 and 100000")
        if not 1 <= self.send_buffer <= 100_000:
            raise ConfigError("streams.send_buffer: must be between 1 and 100000")


@dataclass(frozen=True)
class SupervisorConfig:
    max_restarts: int = 5
    window_seconds: Duration = Duration(60)
    backoff_base: Duration = Duration(0.5)
    backoff_max: Duration = Duration(10)


def _default_state_dir() -> str:
    # systemd's StateDirectory= exports STATE_DIRECTORY; elsewhere stay in the checkout.
    return os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "./.codeqd"


@dataclass(frozen=True)
class Config:
    state_dir: str = field(default_factory=_default_state_dir)
    store: StoreConfig = field(default_factory=StoreConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    actors: ActorsConfig = field(default_factory=ActorsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    log: LogConfig = field(default_factory=LogConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    source: str = ""  # the file it came from, "" for defaults only

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    def validate(self) -> None:
        self.store.validate()
        self.auth.validate()
        self.ratelimit.validate()
        self.actors.ingress.validate()
        self.actors.dispatcher.validate()
        self.actors.notifier.validate()
        self.webhooks.validate()
        self.tracing.validate()
        self.streams.validate()
        for name in ("promoter", "reaper", "janitor", "metrics", "dispatcher"):
            actor = getattr(self.actors, name)
            _positive(f"actors.{name}.interval", actor.interval)
            if not 1 <= actor.batch <= 100_000:
                raise ConfigError(f"actors.{name}.batch: must be between 1 and 100000")
        _positive("limits.body_bytes", self.limits.body_bytes)
        _positive("limits.artifact_bytes", self.limits.artifact_bytes)
        if not 1024 <= self.limits.header_bytes <= 1024 * 1024:
            raise ConfigError("limits.header_bytes: must be between 1024 and 1048576")
        if not 1 <= self.limits.batch_max <= 10_000:
            raise ConfigError("limits.batch_max: must be between 1 and 10000")
        _positive("limits.max_lease_seconds", self.limits.max_lease_seconds)
        if not 1 <= self.tasks.default_max_attempts <= 1000:
            raise ConfigError("tasks.default_max_attempts: must be between 1 and 1000")
        if not 1 <= self.tasks.default_lease_seconds <= self.limits.max_lease_seconds:
            raise ConfigError("tasks.default_lease_seconds: 1..limits.max_lease_seconds")
        _positive("supervisor.max_restarts", self.supervisor.max_restarts)
        _positive("ui.session_ttl", self.ui.session_ttl)
        if self.ui.refresh_interval < 0:
            raise ConfigError("ui.refresh_interval: must be 0 (off) or positive")


# ---------------------------------------------------------------- loading


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Seconds):  # Duration, and the domain's Seconds
        return Duration.parse(value, key)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table")
        return _build(tp, value, key)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            options = ", ".join(map(repr, choices))
            raise ConfigError(f"{key}: must be one of {options}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return _coerce(option, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[-1])
    if origin is list:
        (item,) = get_args(tp)
        if isinstance(value, str):  # env form: "a,b"
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, vt = get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table")
        return {str(k): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover


def _build(cls: type[Any], data: Mapping[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"{full}: unknown key")
        kwargs[key] = _coerce(hints[key], value, full)
    return cls(**kwargs)


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _CLIENT_ENV:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {part} is not a section")
        node[parts[-1]] = _env_value(raw)


def find_config_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("CODEQD_CONFIG"):
        return Path(env)
    return next((p for p in DEFAULT_PATHS if p.is_file()), None)


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate; raises ConfigError naming the key on any problem."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = ""
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
        source = str(p)
    _merge_env(data, environ)
    config: Config = _build(Config, data, "")
    config = dataclasses.replace(config, source=source)
    config.validate()
    return config


def as_dict(config: Config) -> dict[str, Any]:
    """The effective configuration, secrets masked, for check-config and logs."""
    out: dict[str, Any] = dataclasses.asdict(config)
    for section, key in (
        ("auth", "dev_secret"),
        ("webhooks", "hmac_secret"),
        ("ui", "session_secret"),
    ):
        if out[section].get(key):
            out[section][key] = "***"
    # Exporter headers usually carry an API key.
    out["tracing"]["headers"] = {k: "***" for k in out["tracing"]["headers"]}
    for role in ("producer", "worker"):
        prov = out["auth"][role]
        if prov.get("secret"):
            prov["secret"] = "***"
        if prov.get("tokens"):
            prov["tokens"] = ["***"] * len(prov["tokens"])
    return out
