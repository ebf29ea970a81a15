"""The training loop: ``Trainer.fit`` runs epochs of ``train_one_epoch`` + ``validate`` and owns what follows.

The two engine methods only compute and return averaged metrics; ``fit`` logs them, ranks and saves checkpoints,
steps the LR schedule and decides on early stopping. Everything that decides the future of the run lives in the
training state (``last.ckpt``), so a resumed run continues exactly where the stopped one was.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from ..io.checkpoint import ModelCheckpoint, TrainingState, load_training_state, save_checkpoint
from ..config import Config
from ..runtime.devices import resolve_precision, select_device
from ..errors import CardiacDreamerError, CheckpointError, error_text
from ..io.fileio import link_or_copy
from ..io.run_dir import RunDirectory
from ..names import csv_columns, logged_loss_names
from ..task import GuidanceTask, Task
from ..runtime.threads import pin_threads, thread_governor
from . import distributed as dist
from .averaging import average_checkpoints
from .callbacks import EarlyStopping, LRSchedule
from .gradient_step import GradientStep
from .loggers import MetricLogger
from .reproducibility import rng_state, seed_everything, seed_worker, set_rng_state
from .resume_checks import refuse_changed_settings
from .step_timer import StepTimer
from .top_k import TopKCheckpoints

log = logging.getLogger(__name__)


class TrainingDiverged(CardiacDreamerError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class FitResult:
    best_checkpoint: Optional[Path]
    best_score: Optional[float]
    epochs_completed: int
    global_step: int
    stop_reason: str  # "max_epochs" or "early_stopping"
    final_model: Optional[Path]
    averaged_checkpoint: Optional[Path] = None  # training.average_top_k: the mean of the top-k weights

    @property
    def deployed_checkpoint(self) -> Optional[Path]:
        """What evaluation and the sequential stage use: the averaged checkpoint when there is one, else the best."""
        return self.averaged_checkpoint or self.best_checkpoint


TaskFactory = Callable[..., Task]


class Trainer:
    """Trains a model into a :class:`RunDirectory` on the objective a :class:`~cardiac_dreamer.task.Task` defines.

    ``metadata`` (``split``, ``data_dir``, ``grouping``) is stored in every checkpoint so evaluation can find the
    patients the model never saw. ``task_factory(model, config, device, precision, memory_format)`` builds the
    task: the batch keys, step, loss and metric names and the optimizer the loop uses;
    :meth:`GuidanceTask.for_training` unless another objective is given.
    """

    def __init__(self, config: Config, run: Optional[RunDirectory] = None, metadata: Optional[Mapping[str, Any]] = None,
                 progress: bool = True, task_factory: TaskFactory = GuidanceTask.for_training):
        self.config = config
        self.task_factory = task_factory
        self.cfg = config.training
        self.run = run
        self.metadata = dict(metadata or {})
        self.progress = progress
        self.device = select_device(self.cfg.device)
        if self.device.type == "cuda" and dist.launched_by_torchrun():
            self.device = torch.device("cuda", dist.local_rank())
        self.precision = resolve_precision(self.cfg.precision, self.device)
        self.epoch = 0  # the next epoch to run
        self.global_step = 0  # optimizer steps taken
        self.consecutive_nonfinite = 0
        self.nonfinite_steps = 0
        self.step_learning_rate: Optional[float] = None  # the rate of the last optimizer step, as logged
        self.synchronize_timing = False  # the benchmark sets it for exact per-step times on CUDA
        # Shares the cores with jobs started beside this one, except in deterministic runs (float sums follow the
        # count): those take every core they may use, whatever the load was at start.
        self.thread_governor = None
        if not self.cfg.deterministic:
            self.thread_governor = thread_governor()
        elif pin_threads() is not None:
            log.info("threads: %d (deterministic: the same count however busy the machine is)", torch.get_num_threads())

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self, model: torch.nn.Module, train_set: Dataset, val_set: Dataset,
              resume_from: Optional[Path] = None) -> None:
        """Ready the model, loaders, optimizer, schedule and task, and restore ``resume_from``'s training state:
        everything that can fail on a bad config or an incompatible checkpoint, before anything is written."""
        seed_everything(self.cfg.seed, self.cfg.deterministic)
        memory_format = torch.channels_last if self.cfg.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory_format)
        self.task = self.task_factory(self.model, self.config, self.device, self.precision, memory_format)
        self.engine = self.model
        if dist.is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.engine = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        # Validation needs no gradient sync, and DDP's per-forward buffer broadcast would hang when the ranks'
        # validation shards have different numbers of batches: it runs the bare model.
        self.eval_engine = self.model
        if self.cfg.compile:
            self.engine = torch.compile(self.engine)
            self.eval_engine = torch.compile(self.model) if dist.is_distributed() else self.engine
        self.shuffle_generator = torch.Generator()
        self.train_loader = self._loader(train_set, train=True)
        self.val_loader = self._loader(val_set, train=False)
        self.optimizer = self.task.build_optimizer(self.cfg)
        self.parameters = [p for group in self.optimizer.param_groups for p in group["params"]]  # clipped together
        self.steps_per_epoch = math.ceil(len(self.train_loader) / self.cfg.accumulate_grad_batches)
        self.schedule = LRSchedule(self.optimizer, self.cfg, self.steps_per_epoch)
        self.gradient_step = GradientStep(self.precision, self.device, self.cfg.gradient_clip_val)
        self.early_stopping = EarlyStopping(self.cfg.early_stop_patience, self.cfg.min_delta)
        self.resumed_top_k: Optional[Dict[str, Any]] = None
        if resume_from is not None:
            self._restore(Path(resume_from))

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        if dist.is_distributed():
            sampler = (torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=self.cfg.seed)
                       if train else dist.ShardSampler(len(dataset)))
        else:
            sampler = RandomSampler(dataset, generator=self.shuffle_generator) if train else None
        workers = self.cfg.num_workers
        return DataLoader(
            dataset, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=workers,
            persistent_workers=workers > 0 and self.cfg.persistent_workers,
            pin_memory=self.device.type == "cuda", worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def _set_epoch(self, epoch: int) -> None:
        """Shuffling is a function of (seed, epoch), so a resumed run sees the same order."""
        self.shuffle_generator.manual_seed(self.cfg.seed + epoch)
        sampler = self.train_loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    # ----------------------------------------------------------------------------------------------- fit
    def fit(self, model: Optional[torch.nn.Module] = None, train_set: Optional[Dataset] = None,
            val_set: Optional[Dataset] = None, resume_from: Optional[Path] = None,
            run: Optional[RunDirectory] = None) -> FitResult:
        """Train until ``max_epochs`` or early stopping into ``run`` (or the constructor's); returns where the best
        and final models are. Without a model, continues what :meth:`setup` prepared."""
        if model is not None:
            self.setup(model, train_set, val_set, resume_from)
        self.run = run or self.run
        self.top_k = TopKCheckpoints(self.run.checkpoints, self.task.monitor, self.cfg.save_top_k)
        main = dist.is_main_process()
        if self.resumed_top_k is not None and main:
            self.top_k.load_state_dict(self.resumed_top_k)  # reconciled with the files now on disk
        resumed_at = (self.epoch, self.global_step + 1) if self.resumed_top_k is not None else None
        logger = MetricLogger(self.run, csv_columns(self.task.loss_names, self.task.error_names),
                              resumed_at) if main else None
        if main and self.resumed_top_k is not None:
            logger.csv.truncate_after(self.global_step)
        # A run resumed from the checkpoint of the epoch that stopped it early trains no further epoch.
        stop_reason = "early_stopping" if self.early_stopping.stopped else "max_epochs"
        if self.early_stopping.stopped and self.epoch < self.cfg.max_epochs:
            log.info("early stopping ended this run (%d epochs without improvement): no further epoch is trained; a "
                     "larger training.early_stop_patience (now %d) trains on", self.early_stopping.wait,
                     self.early_stopping.patience)
        try:
            while self.epoch < self.cfg.max_epochs and not self.early_stopping.stopped:
                epoch = self.epoch
                started = time.perf_counter()
                ranked = self.task.start_epoch(epoch)
                train_metrics = self.train_one_epoch(epoch, logger)
                self.refresh_batchnorm()
                val_metrics = self.validate()
                # the rate the epoch's last step used (the schedule has moved on; a plateau moves only below)
                learning_rate = (self.optimizer.param_groups[0]["lr"] if self.step_learning_rate is None
                                 else self.step_learning_rate)
                score = val_metrics[self.task.monitor]
                should_stop = ranked and self.early_stopping.update(score)
                if ranked:
                    self.schedule.after_validation(score)
                self.epoch = epoch + 1
                row = {**train_metrics, **val_metrics, "learning_rate": learning_rate,
                       "nonfinite_steps": self.nonfinite_steps}
                if main:
                    logger.log_epoch(row, epoch, self.global_step)
                    self._save_epoch_checkpoints(epoch, score if ranked else None, row)
                    log.info("epoch %d%s: %s %.4f, val_loss %.4f (%.1fs)", epoch, "" if ranked else " (pre-training)",
                             self.task.monitor, score, val_metrics["val_loss"], time.perf_counter() - started)
                dist.barrier()
                if should_stop:
                    stop_reason = "early_stopping"
                    log.info("early stopping: %s did not improve for %d epochs (best %.4f)",
                             self.task.monitor, self.early_stopping.wait, self.early_stopping.best)
                    break
        finally:
            if logger is not None:
                logger.close()
        final = averaged = None
        if main:
            final = self._save_final_model()
            if self.cfg.average_top_k and self.top_k.entries:
                averaged = save_checkpoint(self.run.averaged_checkpoint, average_checkpoints(self.top_k.paths))
                log.info("averaged checkpoint: the mean of the weights of epochs %s",
                         ", ".join(str(entry["epoch"]) for entry in self.top_k.entries))
            elif self.run.averaged_checkpoint.exists():  # of epochs since superseded: it must not be deployed
                self.run.averaged_checkpoint.unlink()
                log.info("removed %s: averaged before this resume, of epochs the run has moved past",
                         self.run.averaged_checkpoint)
        dist.barrier()
        return FitResult(self.top_k.best_path, self.top_k.best_score, self.epoch, self.global_step,
                         stop_reason, final, averaged)

    # ----------------------------------------------------------------------------------------------- engine
    def train_one_epoch(self, epoch: int, logger: Optional[MetricLogger] = None,
                        batches: Optional[Sequence[Mapping[str, Any]]] = None) -> Dict[str, float]:
        """One pass over the training set (or over ``batches``, collated batches held in memory, which the
        throughput benchmark uses); returns the epoch's sample-weighted mean losses. ``self.step_timer`` holds
        where the time went."""
        self.engine.train()
        self._set_epoch(epoch)
        accumulate = self.cfg.accumulate_grad_batches
        if batches is None:
            batch_sizes = _batch_sizes(len(self.train_loader.sampler), self.cfg.batch_size)
        else:
            batch_sizes = [self.task.batch_size(batch) for batch in batches]
        loss_names = self.task.loss_names
        loss_sums = torch.zeros(len(loss_names), device=self.device)
        sample_counts = torch.zeros(len(loss_names), device=self.device)
        window_sums, window_counts = torch.zeros_like(loss_sums), torch.zeros_like(sample_counts)
        window_loss = torch.zeros((), device=self.device)
        self.step_timer = StepTimer(self.device, synchronize=self.synchronize_timing)
        if self.thread_governor is not None:
            self.thread_governor.epoch_start()
        bar = tqdm(self.step_timer.wrap(self.train_loader if batches is None else batches), total=len(batch_sizes),
                   desc=f"epoch {epoch}", leave=False, dynamic_ncols=True,
                   disable=True if not (self.progress and dist.is_main_process()) else None)
        for index, raw in enumerate(bar):
            batch = self.task.prepare_batch(raw, train=True)
            window_start = index - index % accumulate
            window_end = min(window_start + accumulate, len(batch_sizes))
            # A short last window is scaled by its true size, so every window matches one big batch. (Not quite in
            # label-scarce runs: each micro-batch averages its label terms over its own labelled pairs.)
            weight = batch_sizes[index] / sum(batch_sizes[window_start:window_end])
            step_now = index + 1 == window_end
            sync = contextlib.nullcontext() if step_now or not dist.is_distributed() else self.engine.no_sync()
            with sync:
                _, losses = self.task.step(self.engine, batch)
                objective = losses[loss_names[0]]
                self.gradient_step.backward(objective * weight)
            values = torch.stack([losses[name].detach().float() for name in loss_names])
            finite = torch.isfinite(values).all()
            counts = self.task.loss_counts(batch) * finite.float()  # a non-finite batch counts for nothing
            window_sums += torch.where(finite, values, torch.zeros_like(values)) * counts
            window_counts += counts
            window_loss += objective.detach().float() * weight
            if self.thread_governor is not None:
                self.thread_governor.after_step()
            if step_now:
                stepped = self._optimizer_step(window_loss, epoch)
                if stepped and self.global_step % self.cfg.log_every_n_steps == 0:
                    self._log_step(window_sums / window_counts.clamp_min(1), epoch, logger, bar)
                loss_sums += window_sums
                sample_counts += window_counts
                window_sums, window_counts = torch.zeros_like(loss_sums), torch.zeros_like(sample_counts)
                window_loss = torch.zeros((), device=self.device)
        dist.all_reduce_sum(loss_sums)
        dist.all_reduce_sum(sample_counts)
        means = (loss_sums / sample_counts.clamp_min(1)).tolist()
        return dict(zip(logged_loss_names("train", loss_names), means))

    def _optimizer_step(self, window_loss: torch.Tensor, epoch: int) -> bool:
        """Step, or skip a non-finite step with a warning (False); too many in a row stop the run."""
        grad_norm = self.gradient_step.step(self.optimizer, self.parameters)
        # The step's one host sync: whether it counts decides global_step and the LR schedule.
        loss_finite, grad_finite = torch.stack([torch.isfinite(window_loss), torch.isfinite(grad_norm)]).tolist()
        scaler = self.gradient_step.scaler
        if not grad_finite and loss_finite and scaler.is_enabled():
            log.info("fp16 loss scaler skipped step %d (overflow at scale %.0f); lowering the scale",
                     self.global_step, scaler.get_scale() / scaler.get_backoff_factor())
            return False
        elif not (loss_finite and grad_finite):
            self.nonfinite_steps += 1
            self.consecutive_nonfinite += 1
            log.warning("non-finite %s at step %d (epoch %d): step skipped",
                        "loss" if not loss_finite else "gradient", self.global_step, epoch)
            if self.consecutive_nonfinite > self.cfg.max_consecutive_nonfinite:
                raise TrainingDiverged(
                    f"training stopped: {self.consecutive_nonfinite} consecutive steps had a non-finite loss or "
                    f"gradient (epoch {epoch}, step {self.global_step}); the checkpoints in "
                    f"{self.run.checkpoints} are from the last good epoch. Try a lower lr or precision 32."
                )
            return False
        self.consecutive_nonfinite = 0
        self.global_step += 1
        self.step_learning_rate = self.optimizer.param_groups[0]["lr"]  # the rate this step used: what is logged
        self.schedule.after_optimizer_step()
        self.task.after_optimizer_step()
        return True

    def _log_step(self, means: torch.Tensor, epoch: int, logger: Optional[MetricLogger], bar) -> None:
        """The step's losses (their means over its micro-batches, as the epoch means weigh them) and the rate it
        used. Host sync happens here, at logging intervals only."""
        names = self.task.loss_names
        values = means.tolist()
        metrics = dict(zip(logged_loss_names("train", names), values))
        metrics["learning_rate"] = self.step_learning_rate
        if logger is not None:
            logger.log_step(metrics, epoch, self.global_step)
        bar.set_postfix({name: f"{value:.4f}" for name, value in zip(names[:2], values)})

    @torch.no_grad()
    def refresh_batchnorm(self) -> None:
        """Recompute the BatchNorm statistics of the trainable layers on ``batchnorm_refresh_batches`` training
        batches (un-augmented, no gradient), as a cumulative average under the epoch's final weights.

        The running averages trail the weights by about ten steps; at the learning rates that train these models
        quickly, the weights move enough in ten steps that the trailing statistics shift every prediction (measured
        on the phantom: constant offsets of 8 mm and 14 degrees, a held-out error 1.24x the training mean's, 0.62x
        once the statistics were recomputed). Validation and checkpoints then see statistics that match the weights
        they are saved with. The EMA target keeps the running statistics it copied at the last step, those it is
        trained against: handed the recomputed ones, it moved the demo's dreamed / copy latent ratio from 0.57 /
        0.68 / 0.53 to 0.69 / 0.68 / 1.11 (seeds 42-44), a target the latent predictor never learnt.
        """
        budget = self.cfg.batchnorm_refresh_batches
        self.model.train()
        layers = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                  and m.training]  # frozen stages keep theirs
        if not budget or not layers:
            return
        saved_momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over the batches below
        try:
            for index, raw in enumerate(self.train_loader):
                if index == budget:
                    break
                self.task.batchnorm_forward(self.task.prepare_batch(raw, train=False))
        finally:
            for layer, momentum in zip(layers, saved_momenta):
                layer.momentum = momentum

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Mean losses, and the task's mean absolute errors (for guidance: per axis, in mm and degrees, of the
        image-only at1), over the whole validation set, summed over all ranks."""
        self.eval_engine.eval()
        loss_names, error_names = self.task.loss_names, self.task.error_names
        loss_sums = torch.zeros(len(loss_names), device=self.device)
        error_sums = torch.zeros(len(error_names), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device)
        for raw in self.val_loader:
            batch = self.task.prepare_batch(raw, train=False)
            outputs, losses = self.task.step(self.eval_engine, batch)
            size = self.task.batch_size(batch)
            loss_sums += torch.stack([losses[name].float() for name in loss_names]) * size
            error_sums += self.task.errors(outputs, batch).abs().sum(0)
            count += size
        for tensor in (loss_sums, error_sums, count):
            dist.all_reduce_sum(tensor)
        losses = (loss_sums / count.clamp_min(1)).tolist()
        maes = (error_sums / count.clamp_min(1)).tolist()
        metrics = dict(zip(logged_loss_names("val", loss_names), losses))
        metrics.update(zip(error_names, maes))
        return metrics

    # ----------------------------------------------------------------------------------------------- state
    def _model_checkpoint(self, epoch: int, metrics: Mapping[str, float]) -> ModelCheckpoint:
        """What evaluation and inference need: weights (with the statistics), config, split, metrics, and the latent
        target encoder for the world-model diagnostics."""
        return ModelCheckpoint(config=self.config.to_dict(), model_state=dist.unwrap(self.model).state_dict(),
                               epoch=epoch, global_step=self.global_step, metrics=dict(metrics),
                               target_encoder=self.task.state_dict().get("latent_target"), **self.metadata)

    def _training_state(self, epoch: int, metrics: Mapping[str, float]) -> TrainingState:
        """Everything that decides the future of the run, for an exact resume."""
        return TrainingState(
            **vars(self._model_checkpoint(epoch, metrics)),
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.schedule.state_dict(),
            scaler_state=self.gradient_step.state_dict(),
            early_stopping=self.early_stopping.state_dict(),
            top_k=self.top_k.state_dict(),
            task_state=self.task.state_dict(),
            nonfinite_steps=self.nonfinite_steps,
            consecutive_nonfinite=self.consecutive_nonfinite,
            rng=rng_state(),
        )

    def _save_final_model(self) -> Path:
        """The weights training ended with: a hard link to the last epoch's top-k file when it ranked (the same
        bytes, no second copy on disk), else a new file."""
        ranked = self.top_k.path_of(self.epoch - 1)
        if ranked is None:
            return save_checkpoint(self.run.final_model, self._model_checkpoint(self.epoch - 1, {}))
        link_or_copy(ranked, self.run.final_model)
        return self.run.final_model

    def _save_epoch_checkpoints(self, epoch: int, score: Optional[float], metrics: Mapping[str, float]) -> None:
        """The epoch's top-k file when it ranks (``score`` is None when it does not), and the training state."""
        if score is not None:
            self.top_k.add(epoch, score, lambda path: save_checkpoint(path, self._model_checkpoint(epoch, metrics)))
        save_checkpoint(self.run.last_checkpoint, self._training_state(epoch, metrics))
        self.top_k.delete_evicted()  # only now: a state that no longer lists them is on disk

    def _restore(self, path: Path) -> None:
        """Load a training state saved by ``_training_state`` into memory; the GradScaler already exists."""
        state = load_training_state(path)
        # checked first, so that a changed architecture is named as the key, not as the weights that no longer fit
        refuse_changed_settings(path, state, self.config)
        try:
            dist.unwrap(self.model).load_state_dict(state.model_state)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: its weights do not fit the configured model (was the architecture "
                                  f"changed on resume?): {error_text(error)}") from None
        broken = next((key for key, tensor in state.model_state.items()
                       if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)
        if broken is not None:  # training would go on from NaN and save NaN models
            raise CheckpointError(f"{path}: weight {broken} holds NaN or infinite values; resume from an earlier "
                                  "run or retrain")
        parts = (
            ("optimizer_state", lambda: self.optimizer.load_state_dict(state.optimizer_state)),
            ("scheduler_state", lambda: self.schedule.load_state_dict(state.scheduler_state)),
            ("scaler_state", lambda: self.gradient_step.load_state_dict(state.scaler_state)),
            ("early_stopping", lambda: self.early_stopping.load_state_dict(state.early_stopping)),
            ("top_k", lambda: TopKCheckpoints.check_state_dict(state.top_k)),
            ("task_state", lambda: self.task.load_state_dict(state.task_state)),
            ("rng", lambda: set_rng_state(state.rng)),
        )
        for name, restore in parts:
            try:
                restore()
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
                raise CheckpointError(f"{path}: its {name} cannot be restored ({error_text(error, named=True)}); the "
                                      "file is damaged or was not written by cardiac-train") from None
        self.resumed_top_k = state.top_k  # reconciled with the disk when training starts, not before
        self.nonfinite_steps, self.consecutive_nonfinite = state.nonfinite_steps, state.consecutive_nonfinite
        self.epoch = state.epoch + 1
        self.global_step = state.global_step
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.global_step)


def _batch_sizes(num_samples: int, batch_size: int) -> List[int]:
    """Sizes of the batches a loader without drop_last yields: all full but the last."""
    full, rest = divmod(num_samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


