"""Choice units of the notifier: fanout alone, groups round robin, hash groups in
rendezvous order."""

from __future__ import annotations

from typing import Any

from codeqd.domain.subscription import PickUnit, plan


def sub(sid: str, mode: str | None = None, group: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"id": sid, "groupId": group}
    if mode:
        out["deliveryMode"] = mode
    return out


def test_fanout_subscriptions_are_chosen_alone_in_id_order() -> None:
    units = plan([sub("b"), sub("a", "fanout")], "q")
    assert units == [PickUnit([sub("a", "fanout")]), PickUnit([sub("b")])]


def test_a_group_is_one_round_robin_unit() -> None:
    units = plan([sub("b", "group", "g"), sub("a", "group", "g"), sub("c", "group", "h")], "q")
    assert [(u.round_robin, [s["id"] for s in u.subs]) for u in units] == [
        ("g", ["a", "b"]),
        ("h", ["c"]),
    ]


def test_fanout_first_then_groups_then_hash_groups() -> None:
    units = plan([sub("h1", "hash", "x"), sub("g1", "group", "g"), sub("f1")], "q")
    assert [u.subs[0]["id"] for u in units] == ["f1", "g1", "h1"]
    assert units[2].round_robin is None


def test_hash_group_order_depends_on_the_queue_and_is_stable() -> None:
    members = [sub(f"s{i}", "hash", "x") for i in range(8)]
    orders = {q: [s["id"] for s in plan(members, q)[0].subs] for q in ("q1", "q2", "q3", "q4")}
    assert all(sorted(o) == sorted(s["id"] for s in members) for o in orders.values())
    assert len({tuple(o) for o in orders.values()}) > 1  # spread over the members
    assert orders["q1"] == [s["id"] for s in plan(list(reversed(members)), "q1")[0].subs]


def test_no_subscriptions_no_units() -> None:
    assert plan([], "q") == []
