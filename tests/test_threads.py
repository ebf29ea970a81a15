"""The CPU thread policy: threads from the CPUs a process may really use, the user's choice kept."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cardiac_dreamer.runtime.threads import (ThreadGovernor, _own_running_tasks, allowed_cpus, apply_thread_policy,
                                             busy_cpus, cgroup_cpu_quota, choose_threads, other_running_tasks,
                                             physical_cores, usable_cpus)

REPOSITORY = Path(__file__).parents[1]


def test_threads_follow_the_affinity_mask_not_the_host():
    policy = choose_threads(affinity_cpus=4, quota_cpus=None, env={})
    assert policy.threads == 4
    assert policy.env == {"OMP_NUM_THREADS": "4"}


@pytest.mark.parametrize("quota, threads", [(2.0, 2), (1.5, 2), (0.5, 1), (16.0, 8)])
def test_a_cgroup_quota_caps_the_threads_rounded_up(quota, threads):
    assert choose_threads(affinity_cpus=8, quota_cpus=quota, env={}).threads == threads


def test_hyper_threads_do_not_count_as_cores():
    assert choose_threads(affinity_cpus=16, quota_cpus=None, env={}, physical_cores=8).threads == 8


@pytest.mark.parametrize("busy, threads", [(0, 4), (1, 3), (3, 1), (9, 1)])
def test_cores_busy_with_other_work_are_left_to_it(busy, threads):
    policy = choose_threads(affinity_cpus=4, quota_cpus=None, env={}, busy_cpus=busy)
    assert policy.threads == threads
    assert ("busy with other work" in policy.summary()) == (busy > 0)


def test_busy_cpus_are_the_fewest_runnable_tasks_seen_besides_this_one(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.93 2.67 2.88 3/86 6489\n")
    assert busy_cpus(loadavg, samples=2, interval_s=0) == 2
    loadavg.write_text("0.00 0.00 0.00 1/86 6489\n")
    assert busy_cpus(loadavg, samples=1) == 0
    assert busy_cpus(tmp_path / "absent", samples=1) == 0


def test_the_users_thread_count_is_kept():
    policy = choose_threads(affinity_cpus=8, quota_cpus=2.0, env={"OMP_NUM_THREADS": "3"})
    assert policy.threads == 3 and policy.env == {}
    assert "set by the user" in policy.summary()


def test_an_unusable_omp_num_threads_is_replaced():
    choice = choose_threads(affinity_cpus=2, quota_cpus=None, env={"OMP_NUM_THREADS": "lots"})
    assert choice.env["OMP_NUM_THREADS"] == "2"


def test_nothing_changes_once_torch_is_imported():
    import torch  # noqa: F401  (as in a notebook that imported torch first)

    environ = {}
    assert apply_thread_policy(environ) is None and environ == {}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_read_from_the_process_cgroup(tmp_path):
    write(tmp_path / "proc_cgroup", "0::/jobs/train\n")
    write(tmp_path / "cg/jobs/train/cpu.max", "150000 100000\n")
    write(tmp_path / "cg/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") == 1.5


def test_cgroup_v2_without_a_limit_means_no_quota(tmp_path):
    write(tmp_path / "proc_cgroup", "0::/\n")
    write(tmp_path / "cg/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") is None


def test_cgroup_v1_cfs_quota_is_read_and_minus_one_means_unlimited(tmp_path):
    write(tmp_path / "proc_cgroup", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    write(tmp_path / "cg/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n")
    write(tmp_path / "cg/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") == 3.0
    write(tmp_path / "cg/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") is None


def test_physical_cores_count_hyper_thread_siblings_once(tmp_path):
    for cpu, core in {0: 0, 1: 1, 2: 0, 3: 1}.items():
        write(tmp_path / f"cpu{cpu}/topology/physical_package_id", "0\n")
        write(tmp_path / f"cpu{cpu}/topology/core_id", f"{core}\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores({0, 1}, tmp_path) == 2
    assert physical_cores({0, 2}, tmp_path) == 1


def run_python(code: str, env_extra: dict) -> str:
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("OMP_")}
    env.update(env_extra, PYTHONPATH=str(REPOSITORY))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    return result.stdout.split()


ENTRY_POINT = """
    import os
    os.sched_setaffinity(0, {0})  # as taskset -c 0 would
    import cardiac_dreamer.cli.train_command
    import torch
    print(torch.get_num_threads(), os.environ["OMP_NUM_THREADS"])
"""


def test_the_command_line_sets_the_policy_before_torch_loads():
    assert run_python(ENTRY_POINT, {}) == ["1", "1"]


def test_the_command_line_keeps_the_users_settings():
    assert run_python(ENTRY_POINT, {"OMP_NUM_THREADS": "2"}) == ["2", "2"]


SPIN = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"
THREADS = """
    import cardiac_dreamer.cli.train_command
    import torch
    print(torch.get_num_threads())
"""


@pytest.mark.skipif(not Path("/proc/loadavg").exists() or usable_cpus() < 2, reason="needs /proc and 2 CPUs")
def test_a_training_started_beside_a_busy_process_leaves_it_a_core():
    alone = int(run_python(THREADS, {})[0])
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        beside = int(run_python(THREADS, {})[0])
    finally:
        spinner.kill()
        spinner.wait()
    assert beside == max(1, alone - 1), (alone, beside)


# ------------------------------------------------------------------------------- re-decided while training
class Machine:
    """What a governor sees: a clock it reads and the other processes' running tasks, both set by the test."""

    def __init__(self, others: int = 0):
        self.now, self.others, self.looks, self.applied = 0.0, others, 0, []

    def count_others(self) -> int:
        self.looks += 1
        return self.others

    def governor(self, ceiling: int = 2, threads: int = 2) -> ThreadGovernor:
        return ThreadGovernor(ceiling, threads, self.count_others, self.applied.append, interval_s=10.0,
                              slow_factor=3.0, min_gap_s=1.0, clock=lambda: self.now)

    def steps(self, governor: ThreadGovernor, count: int, seconds: float) -> list:
        changes = []
        for _ in range(count):
            self.now += seconds
            changes.append(governor.after_step())
        return [change for change in changes if change is not None]


def test_a_job_alone_keeps_every_core_and_is_not_touched():
    machine = Machine(others=0)
    governor = machine.governor()
    assert governor.epoch_start() is None
    assert machine.steps(governor, 100, 0.5) == [] and machine.applied == []
    assert machine.looks == 1 + 5  # the epoch start, then every 10 s of 50 s: not at every step


def test_two_jobs_started_together_each_take_one_core_at_the_first_epoch():
    machine = Machine(others=2)  # the neighbour's two threads run while this job starts its epoch
    governor = machine.governor()
    assert governor.epoch_start() == 1 and machine.applied == [1]
    machine.others = 1  # the neighbour went to one thread too: the decision holds
    assert machine.steps(governor, 40, 0.5) == []


def test_a_neighbour_arriving_mid_epoch_is_seen_within_the_interval_and_its_core_taken_back_after():
    machine = Machine(others=0)
    governor = machine.governor()
    governor.epoch_start()
    machine.others = 2
    assert machine.steps(governor, 20, 0.5) == [1]  # within 10 s
    machine.others = 0
    assert machine.steps(governor, 20, 0.5) == [2]


def test_a_step_far_slower_than_the_median_triggers_a_look_before_the_interval():
    machine = Machine(others=0)
    governor = machine.governor()
    governor.epoch_start()
    machine.steps(governor, 6, 0.2)
    machine.others = 3
    assert machine.steps(governor, 1, 1.5) == [1]  # 3 s since the last look, a step 7x the median
    assert machine.now < 10.0


@pytest.mark.parametrize("ceiling, others, threads", [(8, 0, 8), (8, 3, 5), (8, 12, 1), (1, 0, 1)])
def test_the_governor_leaves_the_running_tasks_of_others_their_cores(ceiling, others, threads):
    assert Machine().governor(ceiling).target(others) == threads


def fake_proc(root: Path, running: int, own_states: str, child_states: str = "") -> Path:
    """A /proc with ``running`` runnable tasks, this process's threads in ``own_states`` (one letter each) and a
    child process (a loader worker) with threads in ``child_states``."""
    write(root / "loadavg", f"1.00 1.00 1.00 {running}/300 999\n")
    child = 999_999
    for pid, states in ((os.getpid(), own_states), (child, child_states)):
        for tid, state in enumerate(states, start=pid):
            write(root / str(pid) / "task" / str(tid) / "stat", f"{tid} (py thon) {state} 1 2 3\n")
            write(root / str(pid) / "task" / str(tid) / "children", f"{child} " if pid != child and tid == pid else "")
    return root


def test_other_running_tasks_leave_out_this_process_and_its_children(tmp_path):
    proc = fake_proc(tmp_path, running=7, own_states="RRS", child_states="RS")
    assert other_running_tasks(samples=1, proc=proc) == 4  # 7 running, 2 of them ours, 1 our worker's


def test_a_real_spinning_child_counts_as_this_processes_own():
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.5)
        assert _own_running_tasks(Path("/proc")) >= 2  # this thread and the spinning child
    finally:
        spinner.kill()
        spinner.wait()


GOVERNED = """
    import cardiac_dreamer.cli.train_command
    from cardiac_dreamer.runtime.threads import thread_governor
    governor = thread_governor()
    print(None if governor is None else governor.ceiling)
"""


def test_the_governor_acts_only_where_the_command_line_chose_the_count():
    cpus = allowed_cpus()
    ceiling = choose_threads(len(cpus), cgroup_cpu_quota(), {}, physical_cores(cpus)).ceiling
    assert run_python(GOVERNED, {}) == [str(ceiling)]
    assert run_python(GOVERNED, {"OMP_NUM_THREADS": "2"}) == ["None"]


PINNED = """
    import cardiac_dreamer.cli.train_command
    import torch
    from cardiac_dreamer.runtime.threads import pin_threads
    print(torch.get_num_threads(), pin_threads(), torch.get_num_threads())
"""


@pytest.mark.skipif(not Path("/proc/loadavg").exists() or usable_cpus() < 2, reason="needs /proc and 2 CPUs")
def test_a_deterministic_run_takes_every_core_even_beside_a_busy_process():
    # Float sums follow the thread count, so a deterministic run must not take fewer threads because of the load.
    cpus = allowed_cpus()
    ceiling = choose_threads(len(cpus), cgroup_cpu_quota(), {}, physical_cores(cpus)).ceiling
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        started, pinned, now = run_python(PINNED, {})
    finally:
        spinner.kill()
        spinner.wait()
    assert int(started) == max(1, ceiling - 1)  # the start left the busy core to the spinner...
    assert int(pinned) == int(now) == ceiling  # ...and the deterministic run takes it back
    assert run_python(PINNED, {"OMP_NUM_THREADS": "1"}) == ["1", "None", "1"]  # the user's count stays theirs
