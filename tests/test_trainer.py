"""Trainer behaviour users rely on: accumulation, clipping, precision fallback, checkpoints, stopping, resume."""
import contextlib
import csv
import logging
import math
import os

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from cardiac_dreamer.io.checkpoint import ModelCheckpoint, TrainingState, load_checkpoint
from cardiac_dreamer.config import Config, apply_overrides
from cardiac_dreamer.data.prepare import build_datasets, prepare_data
from cardiac_dreamer.runtime import devices
from cardiac_dreamer.runtime.devices import Precision, resolve_precision, select_device
from cardiac_dreamer.errors import ConfigError
from cardiac_dreamer.models import build_model
from cardiac_dreamer.names import LOSS_NAMES, MONITOR, VAL_MAE_NAMES, csv_columns
from cardiac_dreamer.io.run_dir import RunDirectory
from cardiac_dreamer.task import GuidanceTask
from cardiac_dreamer.training.callbacks import EarlyStopping, LRSchedule
from cardiac_dreamer.training.gradient_step import GradientStep
from cardiac_dreamer.training.loggers import read_rows
from cardiac_dreamer.training.top_k import TopKCheckpoints
from cardiac_dreamer.training.trainer import Trainer, TrainingDiverged

GUIDE_METRICS = [
    "train_main_task_loss", "val_main_task_loss", "train_total_loss", "val_loss", "learning_rate",
    "train_latent_loss", "val_latent_loss", "train_aux_t2_action_loss", "val_aux_t2_action_loss",
    "train_consistency_loss", "val_consistency_loss",
    "val_mae_x_mm", "val_mae_y_mm", "val_mae_z_mm", "val_mae_roll_deg", "val_mae_pitch_deg", "val_mae_yaw_deg",
]


# Tiny runs take the shallower ResNet: this file's runs take 39 s instead of 65. The default resnet34 is built, loaded
# and stepped in test_models.py and trained for an epoch in test_culprits.py.
TINY_BACKBONE = "resnet18"


def tiny_config(data_dir, **overrides) -> Config:
    values = {
        "data.data_dir": str(data_dir), "data.image_size": 64, "data.max_pairs_per_patient": 10, "data.augment": False,
        "model.backbone": TINY_BACKBONE, "model.d_model": 16, "model.num_heads": 2, "model.num_layers": 1,
        "training.batch_size": 4, "training.max_epochs": 2, "training.num_workers": 0,
        "training.log_every_n_steps": 2, "training.lr": 1e-3,
    }
    values.update(overrides)
    return apply_overrides(Config(), values)


def fit(config: Config, output_dir, resume_from=None, run=None, task_factory=GuidanceTask.for_training):
    """Train a fresh model (seeded) and return (trainer, result, run)."""
    prepared = prepare_data(config.data)
    datasets = build_datasets(prepared, config.data, normalize_images=False)
    torch.manual_seed(0)
    model = build_model(config, prepared.stats)
    run = run or RunDirectory.create(output_dir)
    trainer = Trainer(config, run, metadata={"split": prepared.split.to_dict()}, progress=False,
                      task_factory=task_factory)
    result = trainer.fit(model, datasets["train"], datasets["val"], resume_from=resume_from)
    return trainer, result, run


def csv_rows(run):
    with open(run.metrics_csv, newline="") as stream:
        return list(csv.reader(stream))


def test_run_writes_checkpoints_logs_and_every_guide_metric(phantom_dir, tmp_path):
    _, result, run = fit(tiny_config(phantom_dir), tmp_path)
    names = sorted(os.listdir(run.checkpoints))
    assert "last.ckpt" in names and "best.ckpt" in names
    assert any(n.startswith("cardiac_dreamer-epoch=00-val_main_task_loss=") for n in names)
    assert run.final_model.is_file() and result.final_model == run.final_model
    assert os.path.samefile(run.best_checkpoint, result.best_checkpoint)
    assert not run.averaged_checkpoint.exists() and result.deployed_checkpoint == result.best_checkpoint
    assert any(p.name.startswith("events.out.tfevents") for p in (run.logs / "cardiac_dreamer").iterdir())
    header, *rows = csv_rows(run)
    assert header == list(csv_columns(LOSS_NAMES, VAL_MAE_NAMES))
    assert set(GUIDE_METRICS) <= set(header)
    epoch_rows = [dict(zip(header, row)) for row in rows if row[header.index("val_loss")]]
    assert [row["epoch"] for row in epoch_rows] == ["0", "1"]
    assert all(math.isfinite(float(row[name])) for row in epoch_rows for name in GUIDE_METRICS)


def test_checkpoints_load_with_weights_only_and_hold_what_resume_needs(phantom_dir, tmp_path):
    _, _, run = fit(tiny_config(phantom_dir, **{"training.max_epochs": 1}), tmp_path)
    state = torch.load(run.last_checkpoint, weights_only=True)
    for key in ("model_state", "config", "optimizer_state", "scheduler_state", "scaler_state", "epoch",
                "global_step", "split", "early_stopping", "top_k", "task_state", "rng", "library_version"):
        assert key in state, key
    assert "pose_std" in {key.split(".")[-1] for key in state["model_state"]}  # statistics: model buffers, once
    assert isinstance(load_checkpoint(run.last_checkpoint), TrainingState)
    model_ckpt = load_checkpoint(run.best_checkpoint)
    assert type(model_ckpt) is ModelCheckpoint and "optimizer_state" not in torch.load(run.best_checkpoint)
    assert model_ckpt.split == state["split"]


def test_averaged_checkpoint_holds_the_mean_of_the_top_k_weights_and_is_deployed(phantom_dir, tmp_path):
    config = tiny_config(phantom_dir, **{"training.max_epochs": 3, "training.save_top_k": 2,
                                         "training.average_top_k": True})
    trainer, result, run = fit(config, tmp_path)
    ranked = trainer.top_k.paths  # best first
    assert len(ranked) == 2 and result.averaged_checkpoint == run.averaged_checkpoint
    assert result.deployed_checkpoint == run.deployed_checkpoint == run.averaged_checkpoint
    averaged, parts = load_checkpoint(run.averaged_checkpoint), [load_checkpoint(path) for path in ranked]
    assert averaged.metrics == {"averaged_epochs": [part.epoch for part in parts]}
    assert averaged.epoch == parts[0].epoch
    weight = "guidance.mlp.0.weight"
    assert weight in averaged.model_state
    assert not torch.equal(parts[0].model_state[weight], parts[1].model_state[weight])
    for name, tensor in averaged.model_state.items():
        if tensor.is_floating_point():
            mean = (parts[0].model_state[name].double() + parts[1].model_state[name].double()) / 2
            assert torch.equal(tensor, mean.to(tensor.dtype)), name
        else:
            assert torch.equal(tensor, parts[0].model_state[name]), name


def test_pretraining_epochs_train_the_world_model_without_labels_and_rank_no_checkpoint(phantom_dir, tmp_path):
    config = tiny_config(phantom_dir, **{"training.max_epochs": 3, "training.pretrain_epochs": 2})
    trained = []  # per optimizer step: how many parameters received a gradient

    def record(optimizer, args, kwargs):
        trained.append(sum(p.grad is not None for group in optimizer.param_groups for p in group["params"]))

    handle = register_optimizer_step_pre_hook(record)
    try:
        trainer, result, run = fit(config, tmp_path)
    finally:
        handle.remove()
    head = len(list(trainer.model.guidance.parameters()))
    steps = len(trained) // 3
    assert trained == [trained[-1] - head] * (2 * steps) + [trained[-1]] * steps  # no label, so no head, until then
    assert [entry["epoch"] for entry in trainer.top_k.entries] == [2]
    assert load_checkpoint(result.best_checkpoint).epoch == 2
    header, *rows = csv_rows(run)
    epoch, val_loss = header.index("epoch"), header.index("val_loss")
    assert [row[epoch] for row in rows if row[val_loss]] == ["0", "1", "2"]  # every epoch logged


def gradients_at_each_step(config, output_dir):
    """The gradients every optimizer step applied (clipping off), in parameter order, and the fitted trainer."""
    steps = []

    def record(optimizer, args, kwargs):
        steps.append([p.grad.clone() for group in optimizer.param_groups for p in group["params"]
                      if p.grad is not None])

    handle = register_optimizer_step_pre_hook(record)
    try:
        trainer, _, _ = fit(config, output_dir)
    finally:
        handle.remove()
    return steps, trainer


def test_gradient_accumulation_matches_one_big_batch(phantom_dir, tmp_path):
    # A frozen backbone keeps BatchNorm in eval mode and dropout 0 removes noise, so the gradients are the same
    # sums in another order. The gradients are compared, not the weights after AdamW: Adam would hide a wrong scale
    # and magnify float noise where a gradient is near zero.
    common = {"model.freeze_backbone_layers": 5, "model.dropout": 0.0, "training.max_epochs": 1,
              "training.scheduler": "none", "training.gradient_clip_val": 0.0,
              "data.max_pairs_per_patient": 10}  # 20 training pairs
    big_steps, big = gradients_at_each_step(tiny_config(phantom_dir, **common, **{"training.batch_size": 8}),
                                            tmp_path / "big")
    small_steps, small = gradients_at_each_step(
        tiny_config(phantom_dir, **common, **{"training.batch_size": 4, "training.accumulate_grad_batches": 2}),
        tmp_path / "accumulated")
    assert big.global_step == small.global_step == 3  # 8+8+4 vs (4+4)+(4+4)+(4): the short window still steps
    assert len(big_steps) == len(small_steps) == 3
    for index, (a, b) in enumerate(zip(big_steps[0], small_steps[0])):  # the same weights: the same gradient
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7), (index, (a - b).abs().max().item())
    for whole, accumulated in zip(big_steps[1:], small_steps[1:]):  # weights a float step apart: the same scale
        ratio = torch.cat([g.flatten() for g in accumulated]).norm() / torch.cat([g.flatten() for g in whole]).norm()
        assert abs(ratio.item() - 1) < 1e-3, ratio.item()  # the short last window averages its 4 pairs, not 8


def test_gradient_clipping_bounds_the_gradient_norm():
    weight = torch.nn.Parameter(torch.zeros(10))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    step = GradientStep(Precision("32", None, False), torch.device("cpu"), clip_norm=0.5)
    step.backward((weight * 100.0).sum())
    grad_norm = step.step(optimizer, [weight])
    assert grad_norm.item() == pytest.approx(100.0 * math.sqrt(10))  # the norm before clipping
    assert weight.norm().item() == pytest.approx(0.5, rel=1e-5)  # SGD moved by exactly the clipped gradient


def test_precision_16_on_cpu_falls_back_with_one_line_and_trains(phantom_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        precision = resolve_precision("16", torch.device("cpu"))
    assert precision.name in ("bf16", "32") and not precision.use_scaler
    assert len([r for r in caplog.records if "precision 16" in r.getMessage()]) == 1
    _, result, _ = fit(tiny_config(phantom_dir, **{"training.precision": 16, "training.max_epochs": 1}), tmp_path)
    assert math.isfinite(result.best_score)


def test_a_cpu_without_native_bf16_says_why_it_runs_fp32_and_warns_only_when_bf16_was_asked_for(monkeypatch, caplog):
    """Precision 16 (the demo's) falling back to fp32 is the documented behaviour, not a fault: it was a warning
    that bf16 "is not supported on cpu" at every demo run, which it is on CPUs with native bf16."""
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)  # this machine's answer, whatever CPU runs it
    with caplog.at_level(logging.INFO, logger="cardiac_dreamer.runtime.devices"):
        assert resolve_precision("16", torch.device("cpu")) is devices.FP32
        assert resolve_precision("bf16", torch.device("cpu")) is devices.FP32
    asked_16, asked_bf16 = caplog.records
    assert asked_16.levelno == logging.INFO and asked_bf16.levelno == logging.WARNING
    assert all("no native bf16" in record.getMessage() for record in caplog.records)


def test_top_k_keeps_the_best_three_files_and_links_best(tmp_path):
    registry = TopKCheckpoints(tmp_path, MONITOR, k=3)
    saved = lambda path: path.write_bytes(path.name.encode())  # noqa: E731
    for epoch, score in enumerate([5.0, 4.0, 6.0, 3.0, float("nan"), 2.0, 7.0]):
        registry.add(epoch, score, saved)
        registry.delete_evicted()  # as the trainer does, once the epoch's training state is saved
    kept = sorted(p.name for p in tmp_path.glob("cardiac_dreamer-*.ckpt"))
    assert [e["score"] for e in registry.entries] == [2.0, 3.0, 4.0]
    assert kept == sorted(e["file"] for e in registry.entries)
    assert os.path.samefile(tmp_path / "best.ckpt", tmp_path / registry.entries[0]["file"])


def test_top_k_registry_is_reconciled_with_the_disk_on_resume(tmp_path):
    mine = tmp_path / "cardiac_dreamer-epoch=07-my_own_metric=0.1000.ckpt"  # named like ours, ranked by another name
    mine.write_bytes(b"the user's")
    registry = TopKCheckpoints(tmp_path, MONITOR, k=3)
    saved = lambda path: path.write_bytes(b"x")  # noqa: E731
    for epoch, score in enumerate([3.0, 2.0]):
        registry.add(epoch, score, saved)
    state = registry.state_dict()
    stray = registry.add(2, 1.0, saved)  # written after the state was saved, e.g. just before a crash
    (tmp_path / state["entries"][1]["file"]).unlink()  # and one recorded file lost
    resumed = TopKCheckpoints(tmp_path, MONITOR, k=3)
    resumed.load_state_dict(state)
    assert not stray.exists() and mine.read_bytes() == b"the user's"
    assert [e["score"] for e in resumed.entries] == [2.0]
    assert os.path.samefile(tmp_path / "best.ckpt", resumed.best_path)


def test_early_stopping_counts_epochs_without_improvement_and_ignores_nan():
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    assert [stopper.update(v) for v in [1.0, 0.995, float("nan")]] == [False, False, True]
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(stopper.state_dict())
    assert (restored.best, restored.wait) == (1.0, 2)


def test_training_stops_early_when_validation_stalls(phantom_dir, tmp_path):
    config = tiny_config(phantom_dir, **{"training.max_epochs": 10, "training.early_stop_patience": 1,
                                         "training.min_delta": 1e6})
    _, result, run = fit(config, tmp_path)
    assert (result.stop_reason, result.epochs_completed) == ("early_stopping", 2)
    ranked = sorted(path.name for path in run.checkpoints.glob("cardiac_dreamer-epoch=*.ckpt"))
    assert len(ranked) == 2
    # Resuming the stopped run (as --resume_cv does for a fold interrupted while it was evaluated) trains no more:
    # an extra epoch would join the top-k and could become best.ckpt.
    _, resumed, _ = fit(config, None, resume_from=run.last_checkpoint, run=run)
    assert (resumed.stop_reason, resumed.epochs_completed) == ("early_stopping", 2)
    assert sorted(path.name for path in run.checkpoints.glob("cardiac_dreamer-epoch=*.ckpt")) == ranked
    assert resumed.best_checkpoint == result.best_checkpoint


def test_a_run_resumed_without_averaging_deploys_its_best_epoch_not_an_old_average(phantom_dir, tmp_path):
    config = tiny_config(phantom_dir, **{"training.max_epochs": 2, "training.average_top_k": True})
    _, _, run = fit(config, tmp_path)
    assert run.deployed_checkpoint == run.averaged_checkpoint
    longer = apply_overrides(config, {"training.max_epochs": 3, "training.average_top_k": False})
    _, resumed, _ = fit(longer, None, resume_from=run.last_checkpoint, run=run)
    assert not run.averaged_checkpoint.exists()  # it averaged epochs the run has moved past
    assert run.deployed_checkpoint == run.best_checkpoint and resumed.deployed_checkpoint.samefile(run.best_checkpoint)


def test_resumed_run_ends_with_the_same_weights_and_metrics_as_an_uninterrupted_one(phantom_dir, tmp_path):
    config = tiny_config(phantom_dir, **{"training.deterministic": True, "training.max_epochs": 3,
                                         "data.augment": True})
    straight, _, straight_run = fit(config, tmp_path / "straight")
    stopped_config = apply_overrides(config, {"training.max_epochs": 2})
    _, _, run = fit(stopped_config, tmp_path / "stopped")
    resumed, result, _ = fit(config, None, resume_from=run.last_checkpoint, run=run)
    assert result.epochs_completed == 3
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert csv_rows(run) == csv_rows(straight_run)  # appended, one header, identical numbers


class PoisonedTask(GuidanceTask):
    """The real objective with every loss turned into NaN: a diverging run."""

    def step(self, engine, batch):
        outputs, losses = super().step(engine, batch)
        return outputs, {name: value * float("nan") for name, value in losses.items()}


def test_non_finite_losses_stop_the_run_and_keep_earlier_checkpoints(phantom_dir, tmp_path):
    _, _, run = fit(tiny_config(phantom_dir, **{"training.max_epochs": 1}), tmp_path)
    before = run.last_checkpoint.read_bytes()
    with pytest.raises(TrainingDiverged, match="consecutive steps had a non-finite loss"):
        fit(tiny_config(phantom_dir, **{"training.max_epochs": 2}), None, resume_from=run.last_checkpoint, run=run,
            task_factory=PoisonedTask.for_training)
    assert run.last_checkpoint.read_bytes() == before


def test_an_unknown_or_absent_device_is_a_config_error():
    with pytest.raises(ConfigError, match="'gpu0' is not a torch device"):
        select_device("gpu0")
    with pytest.raises(ConfigError, match="cannot run the model on this machine"):
        select_device(f"cuda:{torch.cuda.device_count()}")
    assert select_device("cpu") == torch.device("cpu")


class LineTask:
    """A toy objective with its own batch keys, loss names, metric and optimizer: fit y = 2x + 1 by a line."""

    loss_names = ("squared_error", "absolute_error")
    error_names = ("val_error_y",)
    monitor = "val_loss"  # the objective's validation mean

    def __init__(self, model, config, device, precision, memory_format):
        self.model, self.device = model, device

    def prepare_batch(self, raw, train):
        return {key: raw[key].to(self.device) for key in ("x", "y")}

    def batch_size(self, batch):
        return len(batch["x"])

    def loss_counts(self, batch):
        return torch.full((len(self.loss_names),), float(len(batch["x"])))

    def step(self, engine, batch):
        outputs = {"y_hat": engine(batch["x"])}
        error = outputs["y_hat"] - batch["y"]
        return outputs, {"squared_error": error.square().mean(), "absolute_error": error.abs().mean().detach()}

    def errors(self, outputs, batch):
        return outputs["y_hat"] - batch["y"]

    def batchnorm_forward(self, batch):
        self.model(batch["x"])

    def build_optimizer(self, cfg):
        return torch.optim.SGD(self.model.parameters(), lr=cfg.lr)

    def after_optimizer_step(self):
        pass

    def start_epoch(self, epoch):
        return True

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def line_run(tmp_path, **overrides):
    """LineTask trained on 32 points, batch 8 (4 steps an epoch), one step row per step; its metrics.csv rows."""
    x = torch.linspace(-1, 1, 32)[:, None]
    samples = [{"x": value, "y": 2 * value + 1} for value in x]
    config = apply_overrides(Config(), {
        "training.batch_size": 8, "training.max_epochs": 2, "training.num_workers": 0, "training.lr": 0.2,
        "training.device": "cpu", "training.scheduler": "none", "training.batchnorm_refresh_batches": 0,
        "training.log_every_n_steps": 1, **overrides,
    })
    torch.manual_seed(0)
    run = RunDirectory.create(tmp_path)
    Trainer(config, run, progress=False, task_factory=LineTask).fit(torch.nn.Linear(1, 1), samples, samples)
    return read_rows(run.metrics_csv)


def test_a_step_row_holds_the_steps_loss_over_all_its_micro_batches(tmp_path):
    whole = line_run(tmp_path / "whole")
    accumulated = line_run(tmp_path / "accumulated", **{"training.batch_size": 4,
                                                        "training.accumulate_grad_batches": 2})
    first = [next(row for row in rows if row["step"] == 1) for rows in (whole, accumulated)]
    for name in ("train_squared_error", "train_absolute_error"):
        assert first[1][name] == pytest.approx(first[0][name], rel=1e-5)


def test_the_logged_learning_rate_is_the_one_each_step_and_epoch_trained_with(tmp_path):
    rows = line_run(tmp_path, **{"training.scheduler": "cosine", "training.warmup_epochs": 1})
    steps = {row["step"]: row["learning_rate"] for row in rows if row.get("val_loss") is None}
    assert steps[1] == pytest.approx(0.2 / 5) and steps[4] == pytest.approx(0.2 * 4 / 5)  # warmup: (k + 1) / 5
    epoch_0 = next(row for row in rows if row.get("val_loss") is not None)
    assert epoch_0["learning_rate"] == pytest.approx(steps[4])  # the epoch's last step, not the next one


def schedule_rates(cfg, steps_per_epoch: int, steps: int, state=None):
    """The rate each of ``steps`` optimizer steps trains with under an LRSchedule (restored from ``state``), and
    the schedule's state after them."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    schedule = LRSchedule(optimizer, cfg, steps_per_epoch)
    if state is not None:
        schedule.load_state_dict(state)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_optimizer_step()
    return rates, schedule.state_dict()


def test_a_cosine_run_extended_on_resume_trains_its_next_step_on_the_longer_plan():
    short, longer = (apply_overrides(Config(), {"training.scheduler": "cosine", "training.max_epochs": epochs,
                                                "training.warmup_epochs": 0}).training for epochs in (2, 3))
    _, finished = schedule_rates(short, steps_per_epoch=3, steps=6)  # its last rate is min_lr
    resumed, _ = schedule_rates(longer, steps_per_epoch=3, steps=3, state=finished)
    planned, _ = schedule_rates(longer, steps_per_epoch=3, steps=9)
    assert resumed == pytest.approx(planned[6:], rel=1e-12)


def test_a_one_cycle_run_ends_its_last_step_at_the_cycles_floor():
    cfg = apply_overrides(Config(), {"training.scheduler": "onecycle", "training.max_epochs": 2}).training
    rates, _ = schedule_rates(cfg, steps_per_epoch=3, steps=6)
    assert rates[-1] == pytest.approx(min(rates)) and rates[-1] < cfg.lr * 1e-4


def test_label_terms_weigh_by_the_labelled_pairs_they_averaged_over():
    task = GuidanceTask.__new__(GuidanceTask)  # the counts need no model
    task.device = torch.device("cpu")
    batch = {"at1": torch.zeros(4, 6), "labelled": torch.tensor([True, False, True, False])}
    counts = dict(zip(task.loss_names, task.loss_counts(batch).tolist()))
    assert counts == {"total_loss": 4, "main_task_loss": 2, "aux_t2_action_loss": 2, "consistency_loss": 4,
                      "latent_loss": 4}
    del batch["labelled"]
    assert task.loss_counts(batch).tolist() == [4.0] * 5


def test_another_task_with_other_keys_and_losses_trains_with_the_same_trainer(tmp_path):
    x = torch.linspace(-1, 1, 32)[:, None]
    samples = [{"x": value, "y": 2 * value + 1} for value in x]
    config = apply_overrides(Config(), {
        "training.batch_size": 8, "training.max_epochs": 6, "training.num_workers": 0, "training.lr": 0.2,
        "training.device": "cpu", "training.scheduler": "none", "training.batchnorm_refresh_batches": 0,
    })
    torch.manual_seed(0)
    run = RunDirectory.create(tmp_path)
    trainer = Trainer(config, run, progress=False, task_factory=LineTask)
    result = trainer.fit(torch.nn.Linear(1, 1), samples, samples)
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    assert result.epochs_completed == 6 and result.best_checkpoint.is_file()
    # what it writes speaks its own names: the top-k files rank by its monitor, metrics.csv holds its terms
    assert all("-val_loss=" in path.name for path in trainer.top_k.paths) and len(trainer.top_k.paths) == 3
    header = run.metrics_csv.read_text().splitlines()[0].split(",")
    assert header == list(csv_columns(LineTask.loss_names, LineTask.error_names))
    assert {"train_squared_error", "val_absolute_error", "val_error_y"} <= set(header)
    assert all(row["val_error_y"] is not None for row in read_rows(run.metrics_csv) if row["val_loss"] is not None)
    metrics = trainer.validate()
    assert set(metrics) == {"val_loss", "val_absolute_error", "val_error_y"}
    assert metrics["val_loss"] < 0.01 and metrics["val_error_y"] < 0.1  # it learned the line
    weights = load_checkpoint(result.best_checkpoint).model_state
    assert weights["weight"].item() == pytest.approx(2.0, abs=0.2)


def test_an_evicted_top_k_file_stays_until_the_state_without_it_is_saved(tmp_path):
    registry = TopKCheckpoints(tmp_path, MONITOR, k=2)
    saved = lambda path: path.write_bytes(path.name.encode())  # noqa: E731
    for epoch, score in enumerate([3.0, 2.0]):
        registry.add(epoch, score, saved)
    state = registry.state_dict()  # the training state of epoch 1, on disk
    registry.add(2, 1.0, saved)  # epoch 2 evicts epoch 0 ... and the process is killed before last.ckpt is saved
    resumed = TopKCheckpoints(tmp_path, MONITOR, k=2)
    resumed.load_state_dict(state)
    assert [entry["score"] for entry in resumed.entries] == [2.0, 3.0]  # epoch 0 is still there to be averaged
    assert all(path.is_file() for path in resumed.paths) and not (tmp_path / registry.entries[0]["file"]).exists()


class DivergingLineTask(LineTask):
    """The loss turns NaN from the second step of epoch 1 on: a run that diverges across an epoch's end."""

    def start_epoch(self, epoch):
        self.epoch, self.batch = epoch, 0
        return True

    def step(self, engine, batch):
        outputs, losses = super().step(engine, batch)
        if engine.training:
            self.batch += 1
            if (self.epoch, self.batch) >= (1, 2):
                losses = {name: value * float("nan") for name, value in losses.items()}
        return outputs, losses


def test_a_streak_of_non_finite_steps_survives_a_resume(tmp_path):
    x = torch.linspace(-1, 1, 32)[:, None]
    samples = [{"x": value, "y": 2 * value + 1} for value in x]
    config = apply_overrides(Config(), {
        "training.batch_size": 8, "training.num_workers": 0, "training.lr": 0.2, "training.device": "cpu",
        "training.scheduler": "none", "training.batchnorm_refresh_batches": 0, "training.early_stop_patience": 0,
        "training.max_consecutive_nonfinite": 4})

    def train(root, max_epochs, resume=None):
        torch.manual_seed(0)
        run = RunDirectory(root) if resume else RunDirectory.create(root)
        trainer = Trainer(apply_overrides(config, {"training.max_epochs": max_epochs}), run, progress=False,
                          task_factory=DivergingLineTask)
        with pytest.raises(TrainingDiverged) if max_epochs > 2 else contextlib.nullcontext():
            trainer.fit(torch.nn.Linear(1, 1), samples, samples, resume_from=resume)
        return run

    straight = train(tmp_path / "straight", 5)
    stopped = train(tmp_path / "stopped", 2)  # 3 of 4 steps of epoch 1 were NaN when it stopped
    train(stopped.root, 5, resume=stopped.last_checkpoint)
    assert (load_checkpoint(stopped.last_checkpoint).epoch == load_checkpoint(straight.last_checkpoint).epoch == 1)


def test_tensorboard_drops_what_a_resume_redoes(phantom_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, run = fit(tiny_config(phantom_dir, **{"training.max_epochs": 1}), tmp_path)
    after_epoch_0 = run.last_checkpoint.read_bytes()
    fit(tiny_config(phantom_dir, **{"training.max_epochs": 2}), None, resume_from=run.last_checkpoint, run=run)
    run.last_checkpoint.write_bytes(after_epoch_0)  # as if killed before epoch 1's state was saved: epoch 1 is redone
    fit(tiny_config(phantom_dir, **{"training.max_epochs": 2}), None, resume_from=run.last_checkpoint, run=run)
    last = load_checkpoint(run.last_checkpoint)
    epochs = EventAccumulator(str(run.tensorboard)).Reload().Scalars(MONITOR)
    steps = EventAccumulator(str(run.tensorboard / "steps")).Reload().Scalars("step/train_total_loss")
    assert [event.step for event in epochs] == [0, 1]
    assert [event.step for event in steps] == sorted({event.step for event in steps})  # each step once, in order
    assert steps[-1].step == last.global_step


def test_a_run_begun_before_the_step_folder_keeps_its_one_tensorboard_writer_and_its_curves(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from cardiac_dreamer.training.loggers import MetricLogger

    run = RunDirectory.create(tmp_path)
    older = SummaryWriter(log_dir=str(run.tensorboard))  # the layout of before: step values beside epoch values
    for step in range(1, 9):
        older.add_scalar("step/train_total_loss", 1.0 / step, step)
    older.close()
    logger = MetricLogger(run, csv_columns(LOSS_NAMES, VAL_MAE_NAMES), resumed_at=(1, 5))
    logger.log_step({"train_total_loss": 0.1}, epoch=1, step=9)
    logger.close()
    assert not (run.tensorboard / "steps").exists()
    steps = EventAccumulator(str(run.tensorboard)).Reload().Scalars("step/train_total_loss")
    assert [event.step for event in steps] == list(range(1, 10))  # nothing of before purged, the new step beside
