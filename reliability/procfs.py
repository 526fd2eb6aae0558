"""Memory and file-descriptor figures of a process tree, read from /proc (Linux only).

Read directly rather than through psutil: the harness needs two numbers and no new dependency.
"""

import os
from pathlib import Path

PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's worker processes when WORKERS > 1)."""
    found: list[int] = []
    task_dir = PROC / str(pid) / "task"
    try:
        tasks = list(task_dir.iterdir())
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


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of one process, in bytes; 0 once it has gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fd_count(pid: int) -> int:
    """Number of open file descriptors of one process; 0 once it has gone."""
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of the whole process tree (sum over the server and its workers)."""
    return sum(rss_bytes(p) for p in tree(pid))


def tree_fd_count(pid: int) -> int:
    """Open file descriptors of the whole process tree."""
    return sum(fd_count(p) for p in tree(pid))


def mib(n_bytes: float) -> float:
    return n_bytes / (1024 * 1024)
