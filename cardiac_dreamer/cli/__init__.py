"""Command-line entry points (``cardiac-train``, ``cardiac-evaluate``, ``python -m cardiac_dreamer.train``).

Side effect, on purpose: importing this package applies the CPU thread policy of :mod:`cardiac_dreamer.threads`
(thread count from the CPUs this process may use, ``OMP_WAIT_POLICY=PASSIVE``) to the environment. Every entry point
imports it before torch, the only moment OpenMP reads its environment; a user's own ``OMP_NUM_THREADS`` and
``OMP_WAIT_POLICY`` win, and when torch is already imported (a notebook) nothing changes.
"""
import logging

from ..threads import apply_thread_policy

THREAD_POLICY = apply_thread_policy()  # None when torch was imported first


def log_thread_policy() -> None:
    """One line in the run's log saying how many CPU threads it uses and why (once logging is configured)."""
    if THREAD_POLICY is not None:
        logging.getLogger(__name__).info("thread policy: %s", THREAD_POLICY.summary())
