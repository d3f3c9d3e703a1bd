"""``codeqd worker -- COMMAND``: the shell worker of the ``codeqd-client`` distribution
(:mod:`codeqd_client._worker_cli`, also installed as ``codeqd-worker``), registered
as a subcommand of the daemon's CLI."""

from codeqd_client._worker_cli import add_parser, cmd_worker

__all__ = ["add_parser", "cmd_worker"]
