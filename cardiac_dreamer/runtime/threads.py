"""How many CPU threads a training process uses, decided before torch is imported.

Why: torch starts one OpenMP thread per physical core of the *host*. In a container limited to fewer CPUs the
extra threads fight over the cores the working ones need, and every OpenMP barrier waits for the slowest. So the
thread count is the CPUs this process may really use: its affinity mask (``os.sched_getaffinity``: taskset, cpusets,
Slurm), capped by its cgroup CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded
up) and by the physical cores among them (hyper-threads do not add matrix throughput).

Cores that other work keeps busy when the process starts (another training) are left to it: OpenMP threads wait
for each other at every barrier, so two trainings of 2 threads each on 2 cores took 260 s per demo epoch each,
against 37 s alone; with 1 thread each they took 52 s each (the same as one alone with 1 thread), and a second
training given 1 thread beside a running one of 2 took 74 s (the first: 102 s). Busy cores are counted from the
kernel's runnable tasks (``/proc/loadavg``), the smallest of a few samples, so a passing task does not count.

OpenMP's wait policy is left alone: on an idle 2-core machine ``OMP_WAIT_POLICY=PASSIVE`` made a demo epoch 17 %
slower (43.8 s against 37.4 s) and did not help two trainings sharing the machine (260 s per epoch either way).

The count goes into the environment as ``OMP_NUM_THREADS``, which OpenMP reads once, when torch loads; a user's own
``OMP_NUM_THREADS`` is never overridden. :func:`choose_threads` is the pure decision, :func:`apply_thread_policy`
reads the machine and applies it (``cardiac_dreamer.cli`` does so on import, before any torch import).

A count decided once is wrong as soon as the machine changes: two trainings started at the same moment each see an
idle machine and take every core (measured: epochs of 80-114 s, then over 460 s, against 20 s alone), and a training
that later gets a neighbour keeps them all. So while training, :class:`ThreadGovernor` decides again
(``torch.set_num_threads`` between steps) at each epoch start, every ``interval_s`` seconds and after a step far
slower than the running median: the cores other processes keep running (this process and its data-loading workers
not counted) are left to them, and taken back when they go quiet. It acts only where :func:`apply_thread_policy`
chose the count; a user's ``OMP_NUM_THREADS`` or a notebook's own setting is never changed.
"""
from __future__ import annotations

import logging
import math
import os
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, Iterator, List, Mapping, MutableMapping, Optional, Set

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadPolicy:
    """The decision: ``threads`` for torch, the environment variables to set, and why (for the run's log)."""

    threads: int
    env: Dict[str, str] = field(default_factory=dict)  # variables to set; the user's own are never among them
    reason: str = ""
    ceiling: int = 0  # the most threads the machine allows this process, busy cores aside (0: same as threads)

    def summary(self) -> str:
        changes = ", ".join(f"{key}={value}" for key, value in sorted(self.env.items())) or "environment unchanged"
        return f"{self.threads} CPU threads ({self.reason}; {changes})"


def choose_threads(affinity_cpus: int, quota_cpus: Optional[float], env: Mapping[str, str],
                   physical_cores: Optional[int] = None, busy_cpus: int = 0) -> ThreadPolicy:
    """The thread count and environment for a process allowed ``affinity_cpus`` CPUs, a cgroup quota of
    ``quota_cpus`` CPUs (None: unlimited) and ``physical_cores`` physical cores among its CPUs (None: unknown),
    while other work keeps ``busy_cpus`` CPUs busy, given the environment ``env``."""
    limits = [f"{affinity_cpus} CPUs in the affinity mask"]
    usable = cpu_limit(affinity_cpus, quota_cpus)
    if quota_cpus:
        limits.append(f"cgroup quota {quota_cpus:g} CPUs")
    if physical_cores:
        usable = min(usable, physical_cores)
        limits.append(f"{physical_cores} physical cores")
    ceiling = usable
    if busy_cpus > 0:
        usable = max(1, usable - busy_cpus)
        limits.append(f"{busy_cpus} busy with other work")
    changes: Dict[str, str] = {}
    user_threads = _positive_int(env.get("OMP_NUM_THREADS"))
    if user_threads is not None:
        threads, reason, ceiling = user_threads, "OMP_NUM_THREADS set by the user", user_threads
    else:
        threads, reason = usable, ", ".join(limits)
        changes["OMP_NUM_THREADS"] = str(threads)
    return ThreadPolicy(threads, changes, reason, ceiling)


def apply_thread_policy(environ: MutableMapping[str, str] = os.environ) -> Optional[ThreadPolicy]:
    """Decide from this machine and write the decision into ``environ``; None (nothing changed) when torch is
    already imported, since OpenMP has read its environment by then."""
    if "torch" in sys.modules:
        return None
    global DECIDED
    affinity = allowed_cpus()
    policy = choose_threads(len(affinity), cgroup_cpu_quota(), environ, physical_cores(affinity), busy_cpus())
    environ.update(policy.env)
    if policy.env:
        DECIDED = policy
    return policy


DECIDED: Optional[ThreadPolicy] = None  # the count apply_thread_policy chose in this process (None: not ours)


class ThreadGovernor:
    """Re-decides the thread count while training: ``ceiling`` less the cores other processes keep running, at
    least 1. The trainer calls :meth:`epoch_start` and :meth:`after_step`; both return the new count when they
    change it (None otherwise). ``others`` counts the other processes' running tasks; ``apply`` sets the count."""

    def __init__(self, ceiling: int, threads: int, others: Callable[[], int], apply: Callable[[int], None],
                 interval_s: float = 10.0, slow_factor: float = 3.0, min_gap_s: float = 1.0, clock=time.monotonic):
        self.ceiling, self.threads = max(1, ceiling), threads
        self.others, self.apply, self.clock = others, apply, clock
        self.interval_s, self.slow_factor, self.min_gap_s = interval_s, slow_factor, min_gap_s
        self.step_times: Deque[float] = deque(maxlen=50)
        self.last_check = self.last_step = clock()

    def target(self, others: int) -> int:
        """The threads to use while ``others`` tasks of other processes are running."""
        return max(1, self.ceiling - others)

    def epoch_start(self) -> Optional[int]:
        self.last_step = self.clock()
        return self._decide("epoch start")

    def after_step(self) -> Optional[int]:
        now = self.clock()
        step, self.last_step = now - self.last_step, now
        slow = len(self.step_times) >= 5 and step > self.slow_factor * statistics.median(self.step_times)
        self.step_times.append(step)
        since = now - self.last_check
        if since >= self.interval_s or (slow and since >= self.min_gap_s):
            return self._decide(f"a step of {step:.2f} s" if slow else "periodic check")
        return None

    def _decide(self, why: str) -> Optional[int]:
        self.last_check = self.clock()
        others = self.others()
        threads = self.target(others)
        if threads == self.threads:
            return None
        log.info("threads: %d -> %d (%s: %d task(s) of other processes running, %d CPUs usable)", self.threads,
                 threads, why, others, self.ceiling)
        self.threads = threads
        self.apply(threads)
        self.step_times.clear()  # steps at the old count are no yardstick for the new one
        return threads


def pin_threads() -> Optional[int]:
    """For deterministic runs: every thread this process may use, busy cores or not, so that the same command gives
    the same float sums however busy the machine was when it started (the count :func:`apply_thread_policy` chose
    left busy cores out). None, and nothing changed, where the count is not ours (as for :func:`thread_governor`)."""
    if DECIDED is None:
        return None
    import torch

    count = DECIDED.ceiling or DECIDED.threads
    torch.set_num_threads(count)
    return count


def thread_governor() -> Optional[ThreadGovernor]:
    """The governor of this process's torch threads; None where the count is not ours to change (the user set
    ``OMP_NUM_THREADS``, torch was imported before :func:`apply_thread_policy`) or ``/proc`` cannot tell."""
    if DECIDED is None or not Path("/proc/loadavg").exists():
        return None
    import torch  # training has imported it long before; this module must not at import time

    return ThreadGovernor(DECIDED.ceiling or DECIDED.threads, torch.get_num_threads(), other_running_tasks,
                          torch.set_num_threads)


def other_running_tasks(samples: int = 3, interval_s: float = 0.005, proc: Path = Path("/proc")) -> int:
    """Running or runnable tasks of other processes (``/proc/loadavg``, less this process's threads and its
    children's, e.g. data-loading workers, that are running): the smallest of ``samples`` readings; 0 if unknown."""
    readings = []
    for sample in range(samples):
        try:
            running = int((proc / "loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return 0
        readings.append(running - _own_running_tasks(proc))
        if sample + 1 < samples:
            time.sleep(interval_s)
    return max(0, min(readings))


def _own_running_tasks(proc: Path, pid: Optional[int] = None) -> int:
    """Threads in state R (running or runnable) of process ``pid`` (default: this one) and its descendants."""
    pid = os.getpid() if pid is None else pid
    running = 0
    for task in _tasks(proc, pid):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # a thread that ended while we looked
        if stat[stat.rfind(")") + 2: stat.rfind(")") + 3] == "R":
            running += 1
        running += sum(_own_running_tasks(proc, child) for child in _children(task))
    return running


def _tasks(proc: Path, pid: int) -> List[Path]:
    try:
        return list((proc / str(pid) / "task").iterdir())
    except OSError:
        return []


def _children(task: Path) -> Iterator[int]:
    """Child processes started by one thread (``/proc/<pid>/task/<tid>/children``; empty where the kernel lacks
    it)."""
    try:
        text = (task / "children").read_text()
    except OSError:
        return iter(())
    return (int(child) for child in text.split())


def cpu_limit(affinity_cpus: int, quota_cpus: Optional[float]) -> int:
    """CPUs a process may keep busy: its affinity mask, capped by its cgroup quota rounded up (1.5 CPUs' quota lets
    two threads run, each throttled part of the time), at least 1."""
    limit = max(1, affinity_cpus)
    return min(limit, max(1, math.ceil(quota_cpus))) if quota_cpus else limit


def usable_cpus() -> int:
    """:func:`cpu_limit` for this process, e.g. the size of a decoding thread pool."""
    return cpu_limit(len(allowed_cpus()), cgroup_cpu_quota())


def busy_cpus(loadavg: Path = Path("/proc/loadavg"), samples: int = 5, interval_s: float = 0.02) -> int:
    """Tasks other than this one that the kernel runs or queues right now (``/proc/loadavg``'s ``running/total``
    field): the smallest of ``samples`` readings, so a task passing through does not count; 0 when unknown."""
    readings = []
    for sample in range(samples):
        try:
            running = int(loadavg.read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return 0
        readings.append(running - 1)  # this process is one of them
        if sample + 1 < samples:
            time.sleep(interval_s)
    return max(0, min(readings))


def allowed_cpus() -> Set[int]:
    """The CPU numbers in this process's affinity mask (all CPUs where the platform has no masks)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Optional[float]:
    """CPUs' worth of time per period the process's cgroup allows (v2 ``cpu.max``, v1 CFS quota); None if
    unlimited or unknown. Looks in the process's own cgroup, then at the root of the mount (a container's view)."""
    own = _own_cgroups(proc_cgroup)
    for directory in (root / own.get("", "").lstrip("/"), root):
        quota = _read_quota_v2(directory / "cpu.max")
        if quota is not None:
            return quota
    for mount in ("cpu", "cpu,cpuacct"):
        for directory in (root / mount / own.get("cpu", "").lstrip("/"), root / mount):
            quota = _read_quota_v1(directory)
            if quota is not None:
                return quota
    return None


def physical_cores(cpus: Set[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> Optional[int]:
    """Distinct physical cores among ``cpus`` (hyper-thread siblings count once); None when sysfs does not say."""
    cores = set()
    for cpu in cpus:
        try:
            package = (sysfs / f"cpu{cpu}/topology/physical_package_id").read_text().strip()
            core = (sysfs / f"cpu{cpu}/topology/core_id").read_text().strip()
        except OSError:
            return None
        cores.add((package, core))
    return len(cores) or None


def _own_cgroups(proc_cgroup: Path) -> Dict[str, str]:
    """``{controller: path}`` from ``/proc/self/cgroup`` (the v2 unified hierarchy under the key ``""``)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return {}
    groups = {}
    for line in lines:
        parts = line.split(":", 2)  # "hierarchy-id:controller,controller:path"; v2 is "0::path"
        if len(parts) == 3:
            for controller in parts[1].split(","):
                groups[controller] = parts[2]
    return groups


def _read_quota_v2(path: Path) -> Optional[float]:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else _ratio(quota, period)


def _read_quota_v1(directory: Path) -> Optional[float]:
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> Optional[float]:
    """quota / period in CPUs; None for -1 (v1's unlimited) or anything unreadable."""
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _positive_int(text: Optional[str]) -> Optional[int]:
    """A user's ``OMP_NUM_THREADS``: its first number (OpenMP allows a list, "4,2" for nested levels)."""
    try:
        value = int((text or "").split(",")[0])
    except ValueError:
        return None
    return value if value > 0 else None
