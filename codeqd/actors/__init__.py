"""Actors: one long-running trio task per job, each in its own module.

Every actor module exposes ``async def run(ctx, live, *, task_status)`` where
``live`` is its own config section as a ``codeqd.live.Live`` value (SIGHUP swaps
it). The supervisor (``codeqd.supervisor``) knows actors only by that shape.
"""
