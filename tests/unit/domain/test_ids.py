"""Task ids carry their shard and sort by creation time."""

from __future__ import annotations

import uuid

from codeqd.domain.ids import is_task_id, new_task_id, shard_of


def test_ids_carry_the_shard() -> None:
    for shard in (0, 1, 7, 255):
        tid = new_task_id(shard)
        assert is_task_id(tid) and shard_of(tid, 256) == shard
        assert uuid.UUID(tid).version == 7


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_task_id(0) for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_foreign_strings_are_not_ids() -> None:
    for bad in ("", "x", "../etc/passwd", str(uuid.uuid4()), new_task_id(1).upper()):
        assert not is_task_id(bad)
