"""The C heap of a CPU training: freed activation memory goes back to the operating system.

Why: torch allocates CPU tensors with ``malloc``. glibc serves blocks above its *mmap threshold* with ``mmap`` and
returns them to the system on ``free``; smaller ones come from the heap, which keeps what is freed. The threshold
starts at 128 KiB but rises to the size of every mmapped block freed (up to 32 MiB), so after the first training
step most activations (1-32 MB each at 224 px, batch 16) are carved from the heap, and the heap grows with
fragmentation step after step: production fp32 at batch 16 (with channel tokens) peaked at 6.8 GB, and held 3-5 GB
between steps where the live tensors are 1.8 GB. A fixed threshold of 1 MiB keeps every tensor of a megabyte or more
on ``mmap`` (peak 5.6 GB, 1.8 GB between steps). The price is time: every step's activations are fresh pages the
kernel maps and zeroes, and a demo epoch on 2 CPU cores took 69.9 s against 43.8 s. So the policy is opt-in, for a
CPU training that would not fit in memory otherwise: ``CARDIAC_DREAMER_HEAP_POLICY=mmap``.

:func:`apply_heap_policy` sets it through ``mallopt`` (glibc only; elsewhere nothing happens). Any ``MALLOC_*_``
variable or ``glibc.malloc`` tunable of the user's rules alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Mapping, Optional

MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
POLICY_VARIABLE = "CARDIAC_DREAMER_HEAP_POLICY"
OPT_IN = "mmap"


def chosen_mmap_threshold(env: Mapping[str, str]) -> Optional[int]:
    """The mmap threshold to set in bytes, or None: the policy was not asked for, or the user's environment decides."""
    if env.get(POLICY_VARIABLE, "").lower() != OPT_IN:
        return None
    if any(key.startswith("MALLOC_") and key.endswith("_") for key in env):
        return None
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return None
    return MMAP_THRESHOLD_BYTES


def apply_heap_policy(env: Mapping[str, str] = os.environ) -> Optional[int]:
    """Set the mmap threshold chosen for ``env`` in this process (inherited by forked loader workers); returns the
    threshold set, None when none was."""
    threshold = chosen_mmap_threshold(env)
    if threshold is None:
        return None
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows): no mallopt to call
        return None
    return threshold if mallopt(_M_MMAP_THRESHOLD, threshold) == 1 else None
