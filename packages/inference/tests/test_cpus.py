"""The thread plan's arithmetic, from an affinity and cgroup files written under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from kto.inference.cpus import ThreadPlan, cgroup_cpu_quota, plan_threads, usable_cpus

EIGHT = range(8)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _cpus(tmp_path: Path, proc: str, files: dict[str, str], affinity=EIGHT) -> int:
    """``usable_cpus`` with ``proc`` as /proc/self/cgroup and ``files`` under the cgroup root."""
    _write(tmp_path / "proc", {"cgroup": proc})
    _write(tmp_path / "cg", files)
    return usable_cpus(
        affinity, proc_cgroup=tmp_path / "proc" / "cgroup", cgroup_root=tmp_path / "cg"
    )


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000\n", 2),  # a pod limited to 2 CPUs on an 8-CPU node
        ("max 100000\n", 8),  # no quota: the affinity decides
        ("150000 100000\n", 1),  # 1.5 CPUs: rounded down, a second thread would be throttled
        ("50000 100000\n", 1),  # half a CPU: still one thread
        ("1600000 100000\n", 8),  # a quota above the affinity does not add CPUs
    ],
)
def test_cgroup_v2_cpu_max_caps_the_affinity(tmp_path: Path, cpu_max: str, expected: int):
    files = {"kubepods/pod1/ctr/cpu.max": cpu_max}
    assert _cpus(tmp_path, "0::/kubepods/pod1/ctr\n", files) == expected


def test_cgroup_v2_the_tightest_ancestor_applies(tmp_path: Path):
    files = {"kubepods/pod1/cpu.max": "300000 100000", "kubepods/pod1/ctr/cpu.max": "max 100000"}
    assert _cpus(tmp_path, "0::/kubepods/pod1/ctr\n", files) == 3
    files["kubepods/cpu.max"] = "200000 100000"
    assert _cpus(tmp_path, "0::/kubepods/pod1/ctr\n", files) == 2


def test_cgroup_v2_a_container_sees_its_own_cgroup_at_the_root(tmp_path: Path):
    """With a cgroup namespace /proc/self/cgroup says ``0::/`` and the limit is at the mount."""
    assert _cpus(tmp_path, "0::/\n", {"cpu.max": "100000 100000"}) == 1


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("300000", "100000", 3), ("-1", "100000", 8), ("25000", "50000", 1)],
)
def test_cgroup_v1_cfs_quota(tmp_path: Path, quota: str, period: str, expected: int):
    proc = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n3:cpuset:/docker/abc\n"
    files = {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": quota,
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": period,
    }
    assert _cpus(tmp_path, proc, files) == expected


def test_cgroup_v1_container_view_reads_the_mount_point(tmp_path: Path):
    """Inside a v1 container the host's path (/docker/abc) does not exist under the mount."""
    files = {"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}
    assert _cpus(tmp_path, "4:cpu,cpuacct:/docker/abc\n", files) == 2


def test_affinity_below_the_quota_wins(tmp_path: Path):
    """``taskset -c 0`` in a pod allowed 4 CPUs: one CPU."""
    assert _cpus(tmp_path, "0::/\n", {"cpu.max": "400000 100000"}, affinity={0}) == 1


def test_no_cgroup_information_means_no_quota(tmp_path: Path):
    missing = tmp_path / "nowhere"
    assert cgroup_cpu_quota(proc_cgroup=missing, cgroup_root=missing) is None
    assert usable_cpus({0, 1, 2}, proc_cgroup=missing, cgroup_root=missing) == 3
    # a host's root cgroup has no cpu.max, and garbage is no quota either
    assert _cpus(tmp_path, "0::/\nnot a line\n", {"cpu.max": "garbage"}) == 8


def test_the_quota_is_reported_in_cpus(tmp_path: Path):
    _write(tmp_path / "proc", {"cgroup": "0::/a\n"})
    _write(tmp_path / "cg", {"a/cpu.max": "250000 100000"})
    quota = cgroup_cpu_quota(proc_cgroup=tmp_path / "proc" / "cgroup", cgroup_root=tmp_path / "cg")
    assert quota == 2.5


@pytest.mark.parametrize(
    ("cpus", "workers", "share"),
    [(2, 1, 2), (8, 2, 4), (5, 2, 2), (2, 4, 1), (1, 1, 1), (64, 3, 21)],
)
def test_workers_divide_the_cpus(cpus: int, workers: int, share: int):
    """By default each worker runs one lane with its whole share as intra-op threads."""
    plan = plan_threads(workers, cpus)
    assert plan == ThreadPlan(
        cpus=cpus, workers=workers, decode_threads=share, intra_op_threads=share, lanes=1
    )
    assert plan.inter_op_threads == 1  # the graph runs sequentially; parallelism is intra-op


@pytest.mark.parametrize(
    ("cpus", "workers", "lanes", "intra_op"),
    [
        (2, 1, 1, 2),  # one lane: a batch runs on both CPUs
        (2, 1, 2, 1),
        (8, 1, 2, 4),  # two lanes of four intra-op threads
        (8, 2, 1, 4),  # each worker's share, not the machine's
        (8, 2, 3, 1),  # 4 // 3, rounded down: never more threads than CPUs
        (2, 1, 4, 1),  # more lanes than CPUs: still one thread each
    ],
)
def test_lanes_divide_each_worker_share(cpus: int, workers: int, lanes: int, intra_op: int):
    plan = plan_threads(workers, cpus, lanes=lanes)
    assert (plan.lanes, plan.intra_op_threads) == (lanes, intra_op)
    assert plan.decode_threads == max(1, cpus // workers)  # decoding keeps the whole share


def test_a_quota_of_two_cpus_on_a_big_node_plans_two_threads(tmp_path: Path):
    cpus = _cpus(tmp_path, "0::/pod\n", {"pod/cpu.max": "200000 100000"}, affinity=range(64))
    assert plan_threads(1, cpus) == ThreadPlan(
        cpus=2, workers=1, decode_threads=2, intra_op_threads=2, lanes=1
    )
    assert plan_threads(1, cpus, lanes=2).intra_op_threads == 1
    one_core = plan_threads(1, _cpus(tmp_path, "0::/pod\n", {}, affinity=[0]))
    assert (one_core.lanes, one_core.intra_op_threads, one_core.decode_threads) == (1, 1, 1)


def test_a_plan_needs_a_lane():
    with pytest.raises(ValueError, match="lanes must be at least 1"):
        plan_threads(1, 2, lanes=0)


def test_the_plan_reads_this_process_cpus_by_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("kto.inference.cpus.usable_cpus", lambda: 6)
    assert plan_threads(2).decode_threads == 3


@pytest.mark.parametrize(("workers", "cpus"), [(0, 2), (1, 0)])
def test_a_plan_needs_a_worker_and_a_cpu(workers: int, cpus: int):
    with pytest.raises(ValueError, match="must be at least 1"):
        plan_threads(workers, cpus)
