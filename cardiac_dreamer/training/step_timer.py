"""Where a training step's time goes: blocked on the data loader, or computing.

The trainer wraps its batch iterator in a :class:`StepTimer`; the throughput benchmark reads the figures. A step
runs from one request for a batch to the next. With ``synchronize`` (the benchmark sets it on CUDA) the device is
synchronized at each request, so asynchronous kernels are charged to the step that launched them; training leaves
it off and keeps its one host sync per optimizer step.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator, List, TypeVar

import torch

Item = TypeVar("Item")


class StepTimer:
    def __init__(self, device: torch.device, synchronize: bool = False):
        self.device = device
        self.synchronize = synchronize and device.type == "cuda"
        self.wait_times: List[float] = []  # seconds blocked on each batch
        self.step_times: List[float] = []  # seconds from one batch request to the next
        self.step_cpu_times: List[float] = []  # CPU seconds of all this process's threads over the same span

    def wrap(self, batches: Iterable[Item]) -> Iterator[Item]:
        """Yield ``batches`` unchanged while recording the time of each request and each step."""
        iterator = iter(batches)
        previous = previous_cpu = None
        while True:
            if self.synchronize:
                torch.cuda.synchronize(self.device)
            requested, requested_cpu = time.perf_counter(), time.process_time()
            if previous is not None:
                self.step_times.append(requested - previous)
                self.step_cpu_times.append(requested_cpu - previous_cpu)
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.wait_times.append(time.perf_counter() - requested)
            previous, previous_cpu = requested, requested_cpu
            yield batch
