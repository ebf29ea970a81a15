"""Process-group helpers for torchrun: one code path for 1 and N processes.

Every rank runs the same loop and reaches the same decisions (stop, save) from all-reduced metrics; only rank 0
writes files or shows progress.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: torch.device) -> None:
    """Join the group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: the group's, or torchrun's ``RANK`` before it joins and after it leaves (a rank 1 that
    has left the group is still not the one that speaks for the run)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (no-op in a single process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: object, src: int = 0) -> object:
    """Rank ``src``'s ``value`` on every rank (e.g. the run directory rank 0 created)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def destroy_process_group() -> None:
    if is_distributed():
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DDP and/or torch.compile wrappers (what checkpoints store)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


__all__ = [
    "all_reduce_sum", "barrier", "broadcast_object", "destroy_process_group", "init_process_group",
    "is_distributed", "is_main_process", "launched_by_torchrun", "local_rank", "rank", "unwrap", "world_size",
]


class ShardSampler(torch.utils.data.Sampler):
    """Every ``world_size``-th index from ``rank``, without padding: each sample is evaluated exactly once."""

    def __init__(self, length: int):
        self.indices = list(range(rank(), length, world_size()))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
