"""How much memory a process holds, read from Linux's ``/proc`` (in MiB): its peak, its proportional share and
what is not backed by a file, for this process and its data-loader workers. The benchmarks report these."""
from __future__ import annotations

import contextlib
import resource
from pathlib import Path
from typing import List, Optional, Union


def peak_rss_mb(pid: Union[int, str] = "self") -> Optional[float]:
    """Peak resident set size of a process in MB since it started or since :func:`reset_peak_rss` (Linux
    ``VmHWM``); for this process elsewhere, ``getrusage``'s lifetime peak. None for a process that is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        if pid != "self":
            return None
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kilobytes


def reset_peak_rss() -> bool:
    """Start this process's peak RSS afresh (Linux ``clear_refs``), so measurements in one process don't inherit
    an earlier one's peak; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def pss_mb(pid: Union[int, str] = "self") -> Optional[float]:
    """Proportional set size in MB: private pages plus a 1/n share of pages n processes map (a forked loader worker's
    RSS counts everything it shares with its parent; its PSS does not). None where the kernel does not say."""
    return _rollup_mb(pid, "Pss:")


def anonymous_mb(pid: Union[int, str] = "self") -> Optional[float]:
    """Memory not backed by a file, in MB: what the process really costs the system (file-backed pages, e.g. a
    memory-mapped file, are page cache the kernel can drop). Pages shared after a fork count in each process."""
    return _rollup_mb(pid, "Anonymous:")


def _rollup_mb(pid: Union[int, str], field: str) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next(int(line.split()[1]) for line in rollup if line.startswith(field)) / 1024
    except (OSError, StopIteration):
        return None


def child_pids() -> List[int]:
    """This process's children (data-loader workers), from ``/proc``; empty where it cannot tell."""
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.extend(int(pid) for pid in children.read_text().split())
    return sorted(pids)
