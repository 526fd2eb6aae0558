"""The /proc readers the benchmark and the reliability checks measure servers with."""

from __future__ import annotations

import os

from tools import procfs

GONE = 2**22 + 12345  # above the default pid_max: no such process


def test_procfs_reads_this_process() -> None:
    pid = os.getpid()
    assert procfs.rss_bytes(pid) > 1024 * 1024
    assert procfs.tree_peak_rss_bytes(pid) >= procfs.tree_rss_bytes(pid) > 0
    assert procfs.fd_count(pid) >= 3
    assert procfs.tree_cpu_seconds(pid) > 0
    assert pid in procfs.tree(pid)


def test_a_process_that_has_gone_reads_as_zero() -> None:
    assert procfs.rss_bytes(GONE) == 0  # gone (or never was): 0, not an error
    assert procfs.fd_count(GONE) == 0
    assert procfs.cpu_seconds(GONE) == 0.0
    assert procfs.tree(GONE) == [GONE]


def test_machine_figures() -> None:
    busy, now = procfs.machine_busy_seconds()
    assert busy > 0 and now > 0
    assert len(procfs.load_average().split()) == 3
    assert procfs.cpu_model()
