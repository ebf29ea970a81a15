"""Data-loader throughput and memory alone, no model: ``cardiac-train --benchmark --data_only``.

Why: a GPU consumes images faster than one CPU core decodes PNGs (production bf16 at batch 16 on an H100 takes
several hundred images per second), so on data sets above ``data.cache_budget_mb`` the loader, not the model, can set
the pace. This measures the real :class:`~torch.utils.data.DataLoader` over the real dataset, shuffled as training
shuffles, for each way the images can be kept (:attr:`TransitionsDataset.image_store`) and each worker count, and
yields one flat dict per combination: pairs/s and images/s, the first batch (worker start-up), and the memory held by
the main process and by each worker (peak RSS, and PSS, which splits pages shared with other processes fairly, so
the PSS figures add up to what the loader really costs).
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader, RandomSampler

from ..config import Config
from ..data.dataset import TransitionsDataset
from ..data.records import read_records
from ..runtime.devices import select_device
from ..errors import ConfigError
from ..runtime.memory import anonymous_mb, child_pids, peak_rss_mb, pss_mb, reset_peak_rss
from .throughput import SYNTHETIC_DATA, with_data
from ..training.reproducibility import seed_worker

IMAGE_STORES = ("memory", "disk", "decode")
DEFAULT_BATCHES = 50  # measured per line, after the warm-up


def measure_loader(config: Config, stores: Sequence[str] = ("decode", "disk"), workers: Sequence[int] = (0, 2, 4),
                   batches: Optional[int] = None, warmup_batches: int = 2) -> Iterator[Dict[str, Any]]:
    """Yield one result per (image store, worker count), as soon as it is measured.

    ``batches`` measured per line: None measures ``DEFAULT_BATCHES``, or as many as the data holds after the
    warm-up when it holds fewer (``cardiac-train --benchmark --data_only`` on a small directory); a number is
    refused when the data cannot serve it.

    ``stores``: ``"memory"`` (decoded into RAM whatever the budget), ``"disk"`` (packs of decoded images under
    ``data.disk_cache_dir``, built first if missing: ``setup_s`` is then the one-time build) and ``"decode"`` (PNG
    decoded at every read). Every pair of ``config.data.data_dir`` is served (a synthetic phantom when it has none).
    """
    unknown = sorted(set(stores) - set(IMAGE_STORES))
    if unknown or (batches is not None and batches < 1) or warmup_batches < 0 or min(workers, default=0) < 0:
        raise ConfigError(f"loader benchmark: stores must be among {IMAGE_STORES} (got {list(stores)}), batches >= 1, "
                          "warmup_batches >= 0, workers >= 0")
    batch_size = config.training.batch_size
    with tempfile.TemporaryDirectory(prefix="cardiac_dreamer_loader_") as scratch:
        wanted = DEFAULT_BATCHES if batches is None else batches
        config, data_source = with_data(config, Path(scratch), (warmup_batches + wanted) * batch_size)
        # a phantom's packs go with it; real data's go where training will find them
        cache_dir = Path(scratch) / "image_cache" if data_source == SYNTHETIC_DATA else config.data.disk_cache_dir
        started = time.perf_counter()
        records = read_records(config.data.data_dir, max_pairs_per_patient=config.data.max_pairs_per_patient)
        read_records_s = time.perf_counter() - started
        available = len(records) // batch_size - warmup_batches  # whole batches left after the warm-up
        if batches is None and available >= 1:
            wanted = min(wanted, available)
        if wanted > available:
            remedy = "lower --batch_size" if batches is None else "lower --batches or --batch_size"
            raise ConfigError(f"loader benchmark: {warmup_batches + wanted} batches of {batch_size} need more than "
                              f"the {len(records)} pairs available ({remedy})")
        for store in stores:
            reset_peak_rss()
            started = time.perf_counter()
            dataset = _dataset(records, config.data.image_size, store, cache_dir)
            setup = {"data": data_source, "pairs": len(dataset), "images": dataset.num_images,
                     "image_size": config.data.image_size, "batch_size": batch_size, "read_records_s": read_records_s,
                     "image_store_requested": store, "image_store": dataset.image_store,
                     "setup_s": time.perf_counter() - started}
            for count in workers:
                yield {"benchmark": "loader", **setup, **_measure(dataset, config, count, wanted, warmup_batches)}
            del dataset


def _dataset(records, image_size: int, store: str, cache_dir: Optional[Path]) -> TransitionsDataset:
    keep = {"memory": dict(cache_budget_mb=math.inf), "disk": dict(cache_budget_mb=0, disk_cache="auto"),
            "decode": dict(cache_images=False)}[store]
    return TransitionsDataset(records, image_size=image_size, normalize_images=False, disk_cache_dir=cache_dir, **keep)


def _measure(dataset: TransitionsDataset, config: Config, workers: int, batches: int,
             warmup_batches: int) -> Dict[str, Any]:
    """Iterate a loader built as the trainer builds its training loader; time the batches after the warm-up."""
    batch_size = config.training.batch_size
    reset_peak_rss()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, worker_init_fn=seed_worker,
                        sampler=RandomSampler(dataset, generator=torch.Generator().manual_seed(config.training.seed)),
                        pin_memory=select_device(config.training.device).type == "cuda",
                        generator=torch.Generator().manual_seed(config.training.seed))
    other_children = set(child_pids())
    started = time.perf_counter()
    iterator = iter(loader)
    for _ in range(warmup_batches):
        next(iterator)
    first_batches_s = time.perf_counter() - started
    started, started_cpu = time.perf_counter(), time.process_time()
    pairs = sum(len(next(iterator)["index"]) for _ in range(batches))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    worker_pids = sorted(set(child_pids()) - other_children)  # the workers, alive until the iterator goes
    result = {
        "num_workers": workers,
        "batches": batches,
        "pairs_per_s": pairs / seconds,
        "images_per_s": 2 * pairs / seconds,  # two images per pair, each read from the store
        "warmup_batches": warmup_batches,
        "warmup_s": first_batches_s,  # includes starting the workers
        "main_cpu_s_per_batch": cpu_seconds / batches,
        "main_peak_rss_mb": peak_rss_mb(),
        "main_pss_mb": pss_mb("self"),
        "main_anonymous_mb": anonymous_mb("self"),
        "worker_peak_rss_mb": [peak_rss_mb(pid) for pid in worker_pids],
        "worker_pss_mb": [pss_mb(pid) for pid in worker_pids],
        "worker_anonymous_mb": [anonymous_mb(pid) for pid in worker_pids],
    }
    shares = [result["main_pss_mb"], *result["worker_pss_mb"]]
    result["loader_pss_mb"] = sum(shares) if None not in shares else None  # what main + workers really hold
    del iterator
    return result
