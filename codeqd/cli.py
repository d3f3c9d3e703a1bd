"""The ``codeqd`` command: the daemon, config checks, dev tokens and admin helpers.

Every failure is one line on stderr and a non-zero exit, never a traceback.
Subcommands of other modules plug in through ``EXTENSIONS``: each names a
module with ``add_parser(subparsers)`` that sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeqd import config as cfgmod
from codeqd._version import __version__

#: Modules adding subcommands (``add_parser(subparsers)``), in help order.
EXTENSIONS: list[str] = ["codeqd._admin_cli", "codeqd._worker_cli"]


def _load_config(args: argparse.Namespace) -> cfgmod.Config:
    return cfgmod.load(cfgmod.find_config_path(args.config))


def _prepare_metrics_dir(state_dir: Path) -> None:
    """Metrics shared by every process of the daemon; must run before anything imports
    prometheus_client (it picks its storage at import)."""
    path = state_dir.absolute() / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def cmd_run(args: argparse.Namespace) -> int:
    import trio

    from codeqd import logsetup, runtime

    runtime.tune()
    config = _load_config(args)
    _prepare_metrics_dir(config.state_path)
    from codeqd import supervisor

    logsetup.configure(config.log)
    import structlog

    log = structlog.get_logger("codeqd")
    log.info(
        "codeqd.starting",
        version=__version__,
        config=config.source or "(defaults)",
        state_dir=str(config.state_path.absolute()),
        store_mode=config.store.mode,
        auth_mode=config.auth.mode,
    )
    if config.auth.mode == "dev":
        log.warning("auth.dev_mode", hint="dev tokens from `codeqd token`; not for production")
    if config.auth.allow_producer_as_worker:
        log.warning("auth.producer_as_worker", hint="producer tokens act as workers; dev only")
    return trio.run(supervisor.serve, config)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_config(args)
    print(json.dumps(cfgmod.as_dict(config), indent=2, default=str))
    print(f"ok: {config.source or 'defaults'} is valid", file=sys.stderr)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from codeqd.auth import load_or_create_dev_secret, mint_dev_token

    config = _load_config(args)
    if config.auth.mode != "dev":
        raise cfgmod.ConfigError("codeqd token mints dev tokens; auth.mode is not 'dev'")
    events = [e.strip() for e in args.events.split(",") if e.strip()] if args.events else None
    print(
        mint_dev_token(
            load_or_create_dev_secret(config),
            args.role,
            sub=args.sub,
            tenant=args.tenant,
            events=events,
            ttl=args.ttl,
        )
    )
    return 0


def cmd_ui_token(args: argparse.Namespace) -> int:
    from codeqd.http import mint_dev_login_ticket

    config = _load_config(args)
    if config.auth.mode != "dev":
        raise cfgmod.ConfigError("codeqd ui-token works in dev mode only; auth.mode is not 'dev'")
    if not config.ui.enabled:
        raise cfgmod.ConfigError("the dashboard is off (ui.enabled = false)")
    if config.actors.ingress.bind.startswith("unix:"):
        raise cfgmod.ConfigError("codeqd ui-token needs a TCP actors.ingress.bind")
    host, _, port = config.actors.ingress.bind.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    ticket = mint_dev_login_ticket(config, sub=args.sub, tenant=args.tenant)
    print(f"http://{host}:{port}/ui/login/dev?ticket={ticket}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeqd",
        description="codeqd: a task queue daemon (leases, retries, delays, dead letters, "
        "callbacks) over HTTP, stored in KVRocks or Redis.",
        epilog="Config: --config PATH, else $CODEQD_CONFIG, ./codeqd.toml, "
        "/etc/codeqd/codeqd.toml; every key can be set as CODEQD_<SECTION>__<KEY>.",
    )
    parser.add_argument("--version", action="version", version=f"codeqd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="PATH", help="TOML config file")
        return p

    p = with_config(
        sub.add_parser(
            "run",
            help="run the daemon in the foreground (what systemd runs)",
            description="Run the daemon: the store, the HTTP API and the background actors. "
            "SIGTERM/SIGINT stop it cleanly; SIGHUP reloads the tunables.",
        )
    )
    p.set_defaults(func=cmd_run)

    p = with_config(
        sub.add_parser(
            "check-config",
            help="validate the config and print the effective values",
            description="Validate the config (file + environment) and print it with secrets "
            "masked; exit 2 naming the bad key.",
        )
    )
    p.set_defaults(func=cmd_check_config)

    p = with_config(
        sub.add_parser(
            "token",
            help="print a dev token (auth.mode = 'dev')",
            description="Mint a token signed with the dev secret in state_dir.",
        )
    )
    p.add_argument("--role", choices=["producer", "worker", "admin"], required=True)
    p.add_argument("--sub", help="subject (worker id); default dev-<role>")
    p.add_argument("--tenant", default="default", help="tenant id (default: default)")
    p.add_argument("--events", help="worker event types, comma separated (default: *)")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    p.set_defaults(func=cmd_token)

    p = with_config(
        sub.add_parser(
            "ui-token",
            help="print a one-click dashboard login link (auth.mode = 'dev')",
            description="Print a link to /ui/ that logs in as an admin without a token: "
            "valid 10 minutes, in dev mode, from a loopback address only.",
        )
    )
    p.add_argument("--sub", default="dev-admin", help="who the session names (default dev-admin)")
    p.add_argument("--tenant", default="*", help="tenant, or * to pick one (default *)")
    p.set_defaults(func=cmd_ui_token)

    for name in EXTENSIONS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code: Any = args.func(args)
    except cfgmod.ConfigError as e:
        print(f"codeqd: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # one line, never a traceback
        print(f"codeqd: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
