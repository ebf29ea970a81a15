"""The opt-in heap policy: freed tensor-sized blocks go back to the system; the user's malloc settings rule alone."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cardiac_dreamer.runtime.heap import MMAP_THRESHOLD_BYTES, chosen_mmap_threshold

REPOSITORY = Path(__file__).parents[1]


MMAP = {"CARDIAC_DREAMER_HEAP_POLICY": "mmap"}


def test_tensors_of_a_megabyte_or_more_are_mmapped_when_asked():
    assert chosen_mmap_threshold(MMAP) == MMAP_THRESHOLD_BYTES == 2**20


@pytest.mark.parametrize("env", [{}, {"CARDIAC_DREAMER_HEAP_POLICY": "off"},
                                 {**MMAP, "MALLOC_MMAP_THRESHOLD_": "65536"}, {**MMAP, "MALLOC_TRIM_THRESHOLD_": "0"},
                                 {**MMAP, "GLIBC_TUNABLES": "glibc.malloc.top_pad=0"}])
def test_the_heap_is_left_alone_by_default_and_under_the_users_malloc_settings(env):
    assert chosen_mmap_threshold(env) is None


RETAINED_MB = """
    import numpy as np
    import cardiac_dreamer.cli  # applies the policy, as every entry point does

    def rss_mb():
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024

    first = np.ones(8 << 20, np.uint8)
    del first  # glibc raises its dynamic threshold to the size of a freed mmapped block
    before = rss_mb()
    blocks = [np.ones(4 << 20, np.uint8) for _ in range(50)]  # 200 MB of activation-sized blocks
    last = blocks[-1]  # still alive: the heap below it cannot shrink
    del blocks
    print(round(rss_mb() - before))
"""


def retained_mb(env_extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.update(env_extra, PYTHONPATH=str(REPOSITORY))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(RETAINED_MB)], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_freed_activation_sized_blocks_return_to_the_system():
    assert retained_mb(MMAP) < 50
    assert retained_mb({}) > 150  # glibc alone keeps them
