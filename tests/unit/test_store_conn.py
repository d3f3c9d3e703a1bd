"""The connection layer's pure parts: cluster URLs and the server check."""

from __future__ import annotations

from codeqd.store._conn import cluster_nodes, server_problem


def test_cluster_url_keeps_its_credentials() -> None:
    nodes, user, password = cluster_nodes("redis+cluster://app:s%40cret@10.0.0.1:7000,h2:7001/0")
    assert nodes == [("10.0.0.1", 7000), ("h2", 7001)]
    assert (user, password) == ("app", "s@cret")


def test_cluster_url_with_a_password_only_or_nothing() -> None:
    assert cluster_nodes("redis+cluster://:pw@h:1")[1:] == (None, "pw")
    assert cluster_nodes("redis+cluster://h:1,h:2")[1:] == (None, None)


def test_old_redis_and_old_kvrocks_are_refused_with_the_version_needed() -> None:
    what, problem = server_problem("# Server\nredis_version:6.0.16\n")
    assert what == "Redis 6.0.16"
    assert problem is not None and "Redis >= 6.2" in problem
    assert server_problem("redis_version:6.2.0\n") == ("Redis 6.2.0", None)
    assert server_problem("redis_version:7.2.4\n")[1] is None
    what, problem = server_problem("kvrocks_version:2.7.0\nredis_version:4.0.0\n")
    assert what == "KVRocks 2.7.0"
    assert problem is not None and "KVRocks >= 2.8" in problem
    assert server_problem("kvrocks_version:2.10.1\nredis_version:4.0.0\n") == (
        "KVRocks 2.10.1",
        None,
    )
