"""The CPU thread policy: threads from the CPUs a process may really use, the user's choice kept."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cardiac_dreamer.threads import (apply_thread_policy, busy_cpus, cgroup_cpu_quota, choose_threads, physical_cores,
                                     usable_cpus)

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
    assert choose_threads(affinity_cpus=2, quota_cpus=None, env={"OMP_NUM_THREADS": "lots"}).env["OMP_NUM_THREADS"] == "2"


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
