"""How many CPUs this process may really use, and the thread plan built on that number.

``os.cpu_count()`` is the machine's count. In a pod limited to 2 CPUs on a 64-core node it says
64, and pools sized from it start 64 threads that the kernel throttles as soon as they run
together. Two things cap what a process may use:

- its CPU affinity (``taskset``, cpusets): ``os.sched_getaffinity(0)``;
- its cgroup's CPU quota, read from the process's own cgroup (``/proc/self/cgroup``): cgroup v2
  ``cpu.max`` (``"200000 100000"`` is 2 CPUs, ``"max 100000"`` none), cgroup v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (``-1``: none). The tightest quota of the cgroup
  and its ancestors applies.

A fractional quota is rounded down (at least 1): a thread more than the quota allows runs in
bursts and is then throttled for the rest of each period, which is what makes tail latency grow.

The plan gives every pool the same share, ``cpus // workers`` (at least 1): each worker decodes
with that many threads and runs the model on that many threads. Decoding and the forward pass
alternate per batch, so the two pools take turns rather than competing.

The model's threads can also be laid out as *lanes* (``lanes``, ``INFERENCE_LANES`` in the
API): several inference threads, each running its own batch with ``share // lanes`` intra-op
threads, instead of one thread running each batch with the whole share. Why one might: intra-op
parallelism splits every operator between the threads and waits for the slowest at the end of
each of MobileNetV2's ~100 operators, so when a neighbour takes one of the cores every operator
waits for the thread that shares it; lanes never wait for one another. Why the default is still
one lane (:data:`LANES`): measured on the shared 2-core development machine (docs/performance.md),
lanes kept more of their throughput beside ``stress-ng`` at 64 connections, but served 9-16%
less than one lane without the neighbour and had a longer tail at 8 connections (p99/p50 2.0
against 1.6), which the quiet targets do not allow. On one CPU both layouts are one lane of one
thread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# True: one lane per CPU of the worker's share, each with one intra-op thread; False: one lane
# with all the share's intra-op threads (see the module's docstring for the measurements).
LANES = False

PROC_SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadPlan:
    """Threads per worker process, from the CPUs the whole server may use."""

    cpus: int
    workers: int
    decode_threads: int
    intra_op_threads: int  # per lane
    inter_op_threads: int = 1
    lanes: int = 1  # inference threads, each running its own batch


def plan_threads(workers: int = 1, cpus: int | None = None, lanes: int | None = None) -> ThreadPlan:
    """Share ``cpus`` (default: :func:`usable_cpus`) between ``workers`` processes, and each
    worker's share between ``lanes`` inference threads (default: :data:`LANES`'s choice)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cpus = usable_cpus() if cpus is None else cpus
    if cpus < 1:
        raise ValueError(f"cpus must be at least 1, got {cpus}")
    share = max(1, cpus // workers)
    if lanes is None:
        lanes = share if LANES else 1
    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    return ThreadPlan(
        cpus=cpus,
        workers=workers,
        decode_threads=share,
        intra_op_threads=max(1, share // lanes),
        lanes=lanes,
    )


def usable_cpus(
    affinity: Iterable[int] | None = None,
    *,
    proc_cgroup: Path = PROC_SELF_CGROUP,
    cgroup_root: Path = CGROUP_ROOT,
) -> int:
    """The CPUs this process may run on, capped by its cgroup's quota rounded down (≥ 1)."""
    if affinity is None:
        affinity = _affinity()
    cpus = max(1, len(set(affinity)))
    quota = cgroup_cpu_quota(proc_cgroup=proc_cgroup, cgroup_root=cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return cpus


def cgroup_cpu_quota(
    *, proc_cgroup: Path = PROC_SELF_CGROUP, cgroup_root: Path = CGROUP_ROOT
) -> float | None:
    """The tightest CPU quota, in CPUs, over the process's cgroup and its ancestors; None: none.

    Files that are missing or unreadable count as no quota (not Linux, no cgroup mounted).
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: "0::/path"
            quotas.extend(_v2_quotas(cgroup_root, path))
        elif "cpu" in controllers.split(","):
            quotas.extend(_v1_quotas(cgroup_root, controllers, path))
    return min(quotas) if quotas else None


def _v2_quotas(root: Path, path: str) -> list[float]:
    found = []
    for folder in _ancestors(root, path):
        fields = _read(folder / "cpu.max").split()
        if len(fields) == 2 and fields[0] != "max":
            found.append(_ratio(fields[0], fields[1]))
    return [q for q in found if q > 0]


def _v1_quotas(root: Path, controllers: str, path: str) -> list[float]:
    """v1 mounts the cpu controller at ``cpu,cpuacct`` (or ``cpu``), under which the process's
    path may not exist when a container sees only its own cgroup at the mount point."""
    for mount in (root / controllers, root / "cpu"):
        if mount.is_dir():
            found = []
            for folder in _ancestors(mount, path):
                quota = _read(folder / "cpu.cfs_quota_us").strip()
                period = _read(folder / "cpu.cfs_period_us").strip()
                if quota and period and quota != "-1":
                    found.append(_ratio(quota, period))
            return [q for q in found if q > 0]
    return []


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder under ``mount`` and each parent up to the mount point; when the path
    does not exist there (a container's own view), the mount point alone."""
    parts = [p for p in path.strip().split("/") if p and p != ".."]
    folders = [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    existing = [f for f in folders if f.is_dir()]
    return existing or [mount]


def _ratio(quota: str, period: str) -> float:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return 0.0
    return q / p if q > 0 and p > 0 else 0.0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _affinity() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))
