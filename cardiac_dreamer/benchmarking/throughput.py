"""Training throughput and memory for one config, measured on real training steps: ``cardiac-train --benchmark``.

Three measurements in one process, so they share the machine's state:

1. The :class:`Trainer` on its own DataLoader: samples/s, and each step split into *data wait* (time blocked on the
   next batch) and *compute* (everything else: transfer, augmentation, forward, backward, optimizer, bookkeeping),
   as the trainer's :class:`~cardiac_dreamer.training.step_timer.StepTimer` records them.
2. The Trainer and a bare loop (model, optimizer, clipping and precision only, no Trainer) on the same batches,
   fetched once into memory, alternating round by round: their ratio is the Trainer's overhead, and alternating
   keeps a busy machine from favouring one of them.
3. Model FLOPs per step (counted by torch's FlopCounterMode), giving achieved FLOP/s and, where the device's peak
   is known, the model FLOPs utilization.

The peak RSS is this measurement's own (reset at its start, Linux), so several configs can be measured in one
process: e.g. ``--precision 32,16``, or with and without ``training.activation_checkpointing``. Without data at
``config.data.data_dir`` the synthetic phantom is written to a temporary folder and used.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch.utils.data import Subset
from torch.utils.flop_counter import FlopCounterMode

from ..config import Config
from ..data.dataset import TransitionsDataset
from ..data.normalization import NormalizationStats
from ..data.prepare import dataset_from_config, prepare_data
from ..runtime.devices import FP32, cpu_supports_bf16
from ..runtime.memory import peak_rss_mb, reset_peak_rss
from ..errors import ConfigError
from ..models.registry import build_model
from ..names import SPLIT_NAMES
from ..io.run_dir import RunDirectory
from ..phantom import generate_phantom
from ..task import GuidanceTask
from ..training.trainer import Trainer

log = logging.getLogger(__name__)

SYNTHETIC_DATA = "synthetic phantom"  # the "data" figure when no data directory was found
PHANTOM_MAX_PAIRS = 2048  # the benchmark's phantom stops growing here (~10 s to write at 224 px)

# Dense bf16/fp16 tensor-core peaks in TFLOP/s (vendor figures, without sparsity), matched against the GPU's name.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                   "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}


def run_benchmark(config: Config, steps: int = 10, warmup: int = 2, rounds: int = 2,
                  peak_tflops: Optional[float] = None) -> Dict[str, Any]:
    """Measure ``steps`` training steps after ``warmup`` and return one flat dict of figures (JSON-ready).

    ``rounds`` is how many times the Trainer and the bare loop alternate on the in-memory batches;
    ``peak_tflops`` overrides the device's peak used for the model FLOPs utilization.
    """
    if steps < 1 or warmup < 0 or rounds < 1:
        raise ConfigError(f"benchmark needs steps >= 1, warmup >= 0 and rounds >= 1, got {steps}, {warmup}, {rounds}")
    batch_size = config.training.batch_size
    needed = (warmup + steps) * batch_size
    reset_peak_rss()  # this measurement's own peak, not an earlier one's in the same process
    with tempfile.TemporaryDirectory(prefix="cardiac_dreamer_benchmark_") as scratch:
        config, data_source = with_data(config, Path(scratch), needed)
        train_set, stats = _training_samples(config, needed)
        torch.manual_seed(config.training.seed)
        model = build_model(config, stats)
        trainer = Trainer(config, RunDirectory(Path(scratch) / "run"), progress=False)
        trainer.synchronize_timing = True
        trainer.setup(model, train_set, Subset(train_set, range(batch_size)))
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)

        trainer.train_one_epoch(0)
        loader_times = trainer.step_timer
        step_times = loader_times.step_times[warmup:]
        step_cpu_times = loader_times.step_cpu_times[warmup:]
        wait_times = loader_times.wait_times[warmup:]
        batches = list(iter(trainer.train_loader))[:steps]
        trainer_times, trainer_cpu, bare_times, bare_cpu = [], [], [], []
        for _ in range(rounds):
            trainer.train_one_epoch(0, batches=batches)
            trainer_times += trainer.step_timer.step_times
            trainer_cpu += trainer.step_timer.step_cpu_times
            wall, cpu = bare_loop(trainer, batches)
            bare_times += wall
            bare_cpu += cpu
        peak_rss = peak_rss_mb()  # before the FLOP count below builds a second model

    step_median = statistics.median(step_times)
    wait_median = statistics.median(wait_times)
    flops = count_training_flops(config)
    achieved = flops / step_median
    peak = peak_tflops if peak_tflops is not None else device_peak_tflops(trainer.device)
    result = {
        "config": {"token_type": config.model.token_type, "d_model": config.model.d_model,
                   "num_heads": config.model.num_heads, "num_layers": config.model.num_layers,
                   "image_size": config.data.image_size,
                   "batch_size": batch_size, "num_workers": config.training.num_workers,
                   "channels_last": config.training.channels_last, "compile": config.training.compile,
                   "activation_checkpointing": config.training.activation_checkpointing},
        "data": data_source,
        "device": _device_name(trainer.device),
        "precision": trainer.precision.name,
        "precision_requested": config.training.precision,
        "cpu_bf16": cpu_supports_bf16(),
        "threads": torch.get_num_threads(),
        "steps": steps,
        "warmup": warmup,
        "samples_per_s": batch_size / step_median,
        "step_time_median_s": step_median,
        "data_wait_median_s": wait_median,
        "compute_median_s": statistics.median(s - w for s, w in zip(step_times, wait_times)),
        "data_wait_fraction": wait_median / step_median,
        # On a shared machine wall time depends on the neighbours; CPU seconds per step much less so.
        "step_cpu_time_median_s": statistics.median(step_cpu_times),
        "trainer_step_median_s": statistics.median(trainer_times),
        "bare_step_median_s": statistics.median(bare_times),
        "trainer_overhead": statistics.median(trainer_times) / statistics.median(bare_times) - 1.0,
        "trainer_overhead_cpu_time": statistics.median(trainer_cpu) / statistics.median(bare_cpu) - 1.0,
        "overhead_rounds": rounds,
        "peak_rss_mb": peak_rss,
        "peak_gpu_memory_mb": (torch.cuda.max_memory_allocated(trainer.device) / 2**20
                               if trainer.device.type == "cuda" else None),
        "model_gflops_per_step": flops / 1e9,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": peak,
        "mfu": achieved / (peak * 1e12) if peak else None,
    }
    return result


def bare_loop(trainer: Trainer, batches: Sequence[Mapping[str, torch.Tensor]]) -> Tuple[List[float], List[float]]:
    """The loop a user would write by hand, on the Trainer's model, task, optimizer, precision and clipping.

    Returns the wall and CPU time of each step. It does what a step must (the task's batch preparation, forward and
    losses, backward, clip, step, the EMA target's update) and nothing the Trainer adds (metrics, non-finite checks,
    schedule, accumulation bookkeeping).
    """
    engine, optimizer, device, task = trainer.engine, trainer.optimizer, trainer.device, trainer.task
    scaler = torch.amp.GradScaler(device.type, enabled=trainer.precision.use_scaler)
    clip = trainer.cfg.gradient_clip_val or math.inf
    engine.train()
    times, cpu_times = [], []
    for raw in batches:
        _synchronize(device)
        started, started_cpu = time.perf_counter(), time.process_time()
        _, losses = task.step(engine, task.prepare_batch(raw, train=True))
        scaler.scale(losses[task.loss_names[0]]).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trainer.parameters, clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        task.after_optimizer_step()
        _synchronize(device)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - started_cpu)
    return times, cpu_times


def count_training_flops(config: Config) -> float:
    """FLOPs of one training step (forward, latent-target passes, backward) at the config's batch size.

    Counted on one sample on the CPU and scaled by the batch size (every layer is linear in it); the meta device
    would be free but cannot enter the model's autocast block. Optimizer FLOPs are negligible and left out.
    """
    size = config.data.image_size
    # The model's own arithmetic: activation checkpointing's recomputation is no useful work.
    model = build_model(dataclasses.replace(
        config, training=dataclasses.replace(config.training, activation_checkpointing=False)))
    task = GuidanceTask.for_training(model, config, torch.device("cpu"), FP32)
    image = torch.zeros(1, 1, size, size)
    batch = {"image_t1": image, "image_t2": image.clone(), "action_change": torch.zeros(1, 6),
             "at1": torch.zeros(1, 6), "at2": torch.zeros(1, 6)}
    with FlopCounterMode(display=False) as counter:
        _, losses = task.step(model, batch)
        losses[task.loss_names[0]].backward()  # the first term is the objective
    return float(counter.get_total_flops()) * config.training.batch_size


def device_peak_tflops(device: torch.device) -> Optional[float]:
    """The dense bf16 peak of a known GPU; None for CPUs and unknown GPUs (pass ``peak_tflops`` instead)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_TFLOPS.items() if key in name), None)


def with_data(config: Config, scratch: Path, needed: int):
    """The config unchanged when its data directory exists; otherwise pointed at a phantom of ``needed`` pairs (at most
    ``PHANTOM_MAX_PAIRS``), all of them used."""
    if Path(config.data.data_dir).is_dir():
        return config, str(Path(config.data.data_dir).resolve())
    patients = 4
    phantom = scratch / "phantom"
    pairs = min(needed, PHANTOM_MAX_PAIRS)  # a larger need repeats pairs (see _training_samples)
    generate_phantom(phantom, num_patients=patients, pairs_per_patient=math.ceil(pairs / patients) + 1,
                     image_size=config.data.image_size, seed=0)
    log.info("benchmark: no data at %s, using a synthetic phantom", config.data.data_dir)
    data = dataclasses.replace(config.data, data_dir=str(phantom), manual_splits=False, max_pairs_per_patient=None)
    return dataclasses.replace(config, data=data), SYNTHETIC_DATA


def _training_samples(config: Config, needed: int) -> Tuple[TransitionsDataset, NormalizationStats]:
    """``needed`` pairs from all splits in one uint8 dataset, the data's first pairs repeated when it has fewer (the
    benchmark measures steps, not generalization, and a large data set is not decoded for a few steps), and the
    training statistics a new model takes."""
    prepared = prepare_data(config.data, composition=config.model.composition)
    records = [record for name in SPLIT_NAMES for record in prepared.records[name]]
    records = (records * math.ceil(needed / len(records)))[:needed]  # repeated images are decoded once
    return dataset_from_config(records, config.data), prepared.stats


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
