"""Command-line entry points (``cardiac-train``, ``cardiac-evaluate``, ``python -m cardiac_dreamer.train``,
``python -m cardiac_dreamer.synthetic``).

Side effects, on purpose: importing this package sets two process policies, each of which the user's own
environment overrides.

* :mod:`cardiac_dreamer.runtime.threads`: CPU threads from the CPUs this process may use, written into the
  environment. The training and evaluation commands import this package before torch, the only moment OpenMP reads
  its environment; when torch is already imported (a notebook, or the phantom writer, whose
  ``cardiac_dreamer.synthetic`` loads the phantom first) nothing changes.
* :mod:`cardiac_dreamer.runtime.heap`: with ``CARDIAC_DREAMER_HEAP_POLICY=mmap``, tensors of 1 MiB or more are
  mmapped, so the memory of freed activations returns to the system instead of piling up in the C heap (CPU
  training's peak RSS, at a price in time).
"""
import logging

from ..runtime.heap import apply_heap_policy
from ..runtime.threads import apply_thread_policy

THREAD_POLICY = apply_thread_policy()  # None when torch was imported first
HEAP_MMAP_THRESHOLD_BYTES = apply_heap_policy()  # None when the user's environment decides


def log_process_policies() -> None:
    """One line in the run's log: how many CPU threads it uses and why, and the heap setting."""
    threads = THREAD_POLICY.summary() if THREAD_POLICY is not None else "set before cardiac_dreamer.cli was imported"
    heap = (f"tensors >= {HEAP_MMAP_THRESHOLD_BYTES // 2**10} KiB mmapped" if HEAP_MMAP_THRESHOLD_BYTES
            else "glibc's own or the user's")
    logging.getLogger(__name__).info("threads: %s; heap: %s", threads, heap)
