"""Memory, descriptors and CPU time of a process tree, and of the machine, read from /proc.

The benchmark and the reliability checks measure servers the same way: a multi-worker uvicorn
is its process and all its descendants, summed. Read directly rather than through psutil: a few
numbers need no new dependency. Linux only; a process that has gone reads as 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every one of its threads."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a multi-worker server is measured as a whole)."""
    pids = [pid]
    for child in children(pid):
        pids.extend(tree(child))
    return pids


def status_bytes(pid: int, field: str = "VmRSS") -> int:
    """A size from /proc/PID/status (VmRSS: resident now, VmHWM: its peak) in bytes."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of one process, in bytes."""
    return status_bytes(pid, "VmRSS")


def fd_count(pid: int) -> int:
    """Number of open file descriptors of one process."""
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of the whole process tree."""
    return sum(rss_bytes(p) for p in tree(pid))


def tree_peak_rss_bytes(pid: int) -> int:
    """Peak resident memory (VmHWM) of the process tree, summed over its processes."""
    return sum(status_bytes(p, "VmHWM") for p in tree(pid))


def tree_fd_count(pid: int) -> int:
    """Open file descriptors of the whole process tree."""
    return sum(fd_count(p) for p in tree(pid))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process tree so far."""
    return sum(cpu_seconds(p) for p in tree(pid))


def mib(n_bytes: float) -> float:
    return n_bytes / (1024 * 1024)


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, monotonic seconds) of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle
    return busy / os.sysconf("SC_CLK_TCK"), time.monotonic()


def load_average() -> str:
    try:
        return " ".join((PROC / "loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_model() -> str:
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
