"""How many ingress processes ``processes = "auto"`` (the default) starts, and the
sockets they serve on (real sockets on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from codeqd.actors.ingress import AUTO_MAX, _listen, process_count, usable_cpus
from codeqd.config import IngressConfig


def _cgroup(tmp_path: Path, quotas: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, quota in quotas.items():
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(quota + "\n")
    (root / "system.slice" / "codeqd.service").mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/system.slice/codeqd.service\n")
    return proc, root


def test_the_default_is_auto() -> None:
    assert IngressConfig().processes == "auto"


def test_auto_is_the_affinity_capped() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert process_count(IngressConfig()) == min(cpus, AUTO_MAX)
    assert process_count(IngressConfig(processes=3)) == 3


def test_a_cgroup_quota_lowers_it_rounded_up(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    proc, root = _cgroup(tmp_path, {"system.slice/codeqd.service": "150000 100000"})
    assert usable_cpus(proc, root) == min(cpus, 2)
    proc, root = _cgroup(tmp_path, {"system.slice/codeqd.service": "50000 100000"})
    assert usable_cpus(proc, root) == 1


def test_the_tightest_quota_on_the_way_up_counts(tmp_path: Path) -> None:
    proc, root = _cgroup(
        tmp_path, {"system.slice/codeqd.service": "max 100000", "system.slice": "100000 100000"}
    )
    assert usable_cpus(proc, root) == 1


def test_no_quota_or_no_cgroup_v2_leaves_the_affinity(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    proc, root = _cgroup(tmp_path, {"system.slice/codeqd.service": "max 100000"})
    assert usable_cpus(proc, root) == cpus
    (tmp_path / "v1").write_text("12:cpu,cpuacct:/user.slice\n")
    assert usable_cpus(tmp_path / "v1", root) == cpus
    assert usable_cpus(tmp_path / "missing", root) == cpus
    proc.write_text("0::/system.slice/codeqd.service\n")
    (root / "system.slice" / "codeqd.service" / "cpu.max").write_text("garbage")
    assert usable_cpus(proc, root) == cpus


def test_each_process_gets_its_own_socket_and_connections_spread_over_them() -> None:
    socks, address = _listen("127.0.0.1:0", 128, 3)
    try:
        port = socks[0].getsockname()[1]
        assert address == f"http://127.0.0.1:{port}"
        assert [s.getsockname()[1] for s in socks] == [port] * 3
        for s in socks:
            s.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        accepted = [0, 0, 0]
        for i, s in enumerate(socks):
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[i] += 1
        for c in clients:
            c.close()
        # Every connection reached one socket, and each socket got some of them (the
        # kernel hashes them over the group: all 60 on one has odds of ~1e-10).
        assert sum(accepted) == 60 and all(accepted), accepted
    finally:
        for s in socks:
            s.close()


def test_a_unix_socket_is_one_shared_socket(tmp_path: Path) -> None:
    socks, address = _listen(f"unix:{tmp_path}/codeqd.sock", 16, 3)
    try:
        assert len(socks) == 1 and address == f"unix:{tmp_path}/codeqd.sock"
    finally:
        socks[0].close()
