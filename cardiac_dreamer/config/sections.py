"""The four sections of a run's config (model, loss, data, training): every key, its default and its range.

Every number has an allowed range written beside its default (``ranged(default, low, high)``): NaN and infinities
are in no range, and the upper bounds keep a hostile or mistyped config (one stored in a checkpoint included) from
asking the machine for more memory than it has before anything is built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Optional

from ..errors import ConfigError
from .values import Range, check_choice, check_text, in_range, normalize_precision, range_error, ranged


MAX_SEED = 2**32 - 1  # NumPy's seeds stop here; torch's and Python's accept it too
# A transformer of 1e9 weights is 4 GB in fp32 (16 GB with AdamW's state): 24x the guide's model, and the most a
# config may ask for, whatever combination of d_model, num_layers and dim_feedforward gets there.
MAX_TRANSFORMER_PARAMETERS = 10**9
BACKBONES = ("resnet18", "resnet34")  # model.backbone: torchvision ResNets (models/backbone.py builds them)
# The values of the other keys that name a choice (the command line's --help lists them from here).
VARIANTS = ("dreamer", "direct")
TOKEN_TYPES = ("channel", "spatial")
SCHEDULERS = ("plateau", "cosine", "onecycle", "none")
STEP_SCHEDULERS = ("cosine", "onecycle")  # the schedules that count optimizer steps
COMPOSITION_MODES = ("additive", "se3")  # model.composition: how a move composes with a pose (geometry.py)
DISK_CACHE_MODES = ("auto", "off")  # data.disk_cache
PRECISIONS = ("32", "16", "bf16")
# loss.latent_prediction. "change": the target encoder's own view of image t1 plus what the dreamer changed (read by
# the latent predictor), so a dreamer that changes nothing predicts "nothing changes". "features": the latent
# predictor's reading of the dreamed t2 features (what runs before the key did; docs/objective.md measures both).
LATENT_PREDICTIONS = ("change", "features")


@dataclass
class ModelConfig:
    """Architecture of :class:`~cardiac_dreamer.models.CardiacDreamer`."""

    variant: str = "dreamer"  # "dreamer" (world model) or "direct" (image alone, the ablation baseline)
    # "spatial": h*w tokens of 512 values (49 at 224 px); "channel": 512 tokens of h*w values. Spatial by default: as
    # accurate at 224 px (docs/configuration.md) for a tenth of the dreamer's compute, which imagining moves pays
    # per candidate
    token_type: str = "spatial"
    d_model: int = ranged(768, 1, 4096)
    num_heads: int = ranged(12, 1, 128)  # must divide d_model
    num_layers: int = ranged(6, 1, 48)
    dim_feedforward: Optional[int] = ranged(None, 1, 16384)  # None means 4 * d_model
    dropout: float = ranged(0.1, 0.0, 1.0, high_open=True)
    composition: str = "additive"  # how at1 follows from at2 and the move: "additive" or "se3"
    backbone: str = "resnet34"  # "resnet18" or "resnet34" (torchvision's, with a 1-channel stem)
    pretrained: bool = False  # ImageNet weights: pretrained_weights, else torchvision's (hub cache, downloaded)
    pretrained_weights: Optional[str] = None
    freeze_backbone_layers: int = ranged(0, 0, 5)  # 1 freezes the stem, k the stem and the first k-1 residual stages
    # The sequential estimator: at1 from the current frame and the K-1 frames before it with the moves since,
    # trained after the main fit on its frozen features (0 = off; else K >= 2).
    sequence_frames: int = ranged(0, 0, 64)

    def __post_init__(self) -> None:
        _check_fields("model", self)
        check_choice("model.variant", self.variant, VARIANTS)
        check_choice("model.backbone", self.backbone, BACKBONES, suggest=True)
        check_choice("model.token_type", self.token_type, TOKEN_TYPES)
        check_choice("model.composition", self.composition, COMPOSITION_MODES)
        if self.sequence_frames == 1:
            raise ConfigError("model.sequence_frames must be 0 (off) or >= 2 (the current frame and at least one "
                              "before it), got 1")
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})"
            )
        _check_transformer_size(self)


@dataclass
class LossConfig:
    """Weights of the SmoothL1 terms (pose errors divided by the training std of each axis)."""

    lambda_latent: float = ranged(0.2, 0.0, 1000.0)  # dreamed t2 features vs the EMA target encoder's view of t2
    lambda_t2_action: float = ranged(1.0, 0.0, 1000.0)  # at2 predicted from the dreamed t2 features vs its label
    lambda_consistency: float = ranged(2.0, 0.0, 1000.0)  # at2 composed back through the move vs image-only at1
    smooth_l1_beta: float = ranged(1.0, 0.0, 1000.0, low_open=True)  # in training stds
    primary_task_only: bool = False
    latent_target_momentum: float = ranged(0.99, 0.0, 1.0, high_open=True)  # EMA of the latent target's backbone
    latent_prediction: str = "change"  # what the latent term compares with the target's view of t2 (LATENT_PREDICTIONS)

    def __post_init__(self) -> None:
        _check_fields("loss", self)
        check_choice("loss.latent_prediction", self.latent_prediction, LATENT_PREDICTIONS)


@dataclass
class DataConfig:
    """Where the patient folders are and how patients are split."""

    data_dir: str = "data/processed"
    # A multiple of 32 (the backbone's stride). Above 1024 (~21x the guide's pixels) the backbone's activations
    # alone outgrow a GPU's memory at the guide's batch size.
    image_size: int = ranged(224, 32, 1024)
    grouping_file: Optional[str] = None  # JSON {folder: patient_id} for several scans of one person
    manual_splits: bool = False
    train_patients: List[str] = field(default_factory=list)
    val_patients: List[str] = field(default_factory=list)
    test_patients: List[str] = field(default_factory=list)
    train_ratio: float = ranged(0.70, 0.0, 1.0)  # the three ratios sum to 1
    val_ratio: float = ranged(0.15, 0.0, 1.0)
    test_ratio: float = ranged(0.15, 0.0, 1.0)
    split_seed: int = ranged(42, 0, MAX_SEED)
    cv_folds: int = ranged(0, 0, 1000)  # 0 is off; >= 2 runs cross-patient k-fold cross-validation
    # A subset of N entries spread evenly over each folder's entries (numpy.linspace indices, first and last
    # included), so an autocorrelated sweep still contributes poses from its whole length.
    max_pairs_per_patient: Optional[int] = ranged(None, 1, 10**9)
    # Label-scarce experiments: the labels of this fraction of the training patients (at least one, seeded by
    # split_seed) are used; the other training patients' pairs train the world model as motion-only examples.
    label_fraction: float = ranged(1.0, 0.0, 1.0, low_open=True)
    # 0: train on the export's pairs. N: each training pair's t2 is drawn again among the numbered frames of its
    # sweep up to N frames before or after t1 (seeded by split_seed), so the world model sees moves of several mm and
    # degrees, not only the export's sub-millimetre ones; validation and test keep the export's pairs.
    pair_gap_frames: int = ranged(0, 0, 10**6)
    cache_images: bool = True  # keep decoded uint8 images in memory when they fit cache_budget_mb
    cache_budget_mb: int = ranged(2048, 0, 10**7)  # 0 keeps no decoded image in memory
    # Above cache_budget_mb: "auto" decodes each patient's images once into a pack under disk_cache_dir and reads
    # them from there every epoch; "off" decodes the PNGs every epoch.
    disk_cache: str = "auto"
    disk_cache_dir: Optional[str] = None  # None: $CARDIAC_DREAMER_CACHE, $XDG_CACHE_HOME/cardiac_dreamer, ~/.cache/...
    augment: bool = True  # photometric augmentation of training images (never geometric: it would change pose)

    def __post_init__(self) -> None:
        _check_fields("data", self)
        if self.image_size % 32:
            raise ConfigError(f"data.image_size must be a multiple of 32, got {self.image_size}")
        check_choice("data.disk_cache", self.disk_cache, DISK_CACHE_MODES)
        ratios = (self.train_ratio, self.val_ratio, self.test_ratio)
        if abs(sum(ratios) - 1.0) > 1e-6:
            raise ConfigError(f"data split ratios must sum to 1, got {ratios}")
        if self.cv_folds == 1:
            raise ConfigError("data.cv_folds must be 0 (off) or >= 2, got 1")
        if self.train_patients or self.val_patients or self.test_patients:
            self.manual_splits = True  # listing patients is a manual split, from YAML or --set as from the flags


@dataclass
class TrainingConfig:
    """The optimisation loop: batch, precision, schedule, stopping, checkpoints, reproducibility."""

    batch_size: int = ranged(16, 1, 65536)
    max_epochs: int = ranged(150, 1, 100_000)
    lr: float = ranged(2e-4, 0.0, 10.0, low_open=True)
    weight_decay: float = ranged(0.01, 0.0, 10.0)
    scheduler: str = "plateau"  # "plateau", "cosine" (with linear warmup), "onecycle" or "none"
    warmup_epochs: int = ranged(1, 0, 100_000)
    plateau_factor: float = ranged(0.5, 0.0, 1.0, low_open=True, high_open=True)  # the rate is multiplied by it
    plateau_patience: int = ranged(5, 0, 100_000)
    min_lr: float = ranged(1e-7, 0.0, 10.0)  # the floor of plateau and cosine; at most lr
    early_stop_patience: int = ranged(20, 0, 100_000)
    min_delta: float = ranged(0.0, 0.0, 1e9)
    precision: str = "32"  # "32", "16" (fp16 on CUDA, bf16 on a capable CPU) or "bf16"
    accumulate_grad_batches: int = ranged(1, 1, 65536)
    gradient_clip_val: Optional[float] = ranged(1.0, 0.0, 1e9)  # max gradient norm; None or 0 disables clipping
    num_workers: int = ranged(4, 0, 256)  # the guide's: its troubleshooting reduces it from 4
    persistent_workers: bool = True
    device: str = "auto"  # "auto" (cuda, then mps, then cpu) or an explicit torch device
    seed: int = ranged(42, 0, MAX_SEED)
    deterministic: bool = False
    # Self-supervised pre-training: the first N epochs train the world model's latent term alone on every pair (no
    # label read; the backbone learns what a move does to the image), then the labels fine-tune. Those epochs rank
    # no checkpoint, nor count toward early stopping or the plateau.
    pretrain_epochs: int = ranged(0, 0, 100_000)
    save_top_k: int = ranged(3, 1, 1000)
    # Also write checkpoints/averaged.ckpt, the mean of the top-k checkpoints' weights, and evaluate that one.
    average_top_k: bool = False
    log_every_n_steps: int = ranged(10, 1, 10**9)
    max_consecutive_nonfinite: int = ranged(3, 0, 10**6)  # skipped non-finite steps in a row before the run stops
    channels_last: bool = True
    compile: bool = False
    activation_checkpointing: bool = False  # recompute transformer activations in backward: less memory, more time
    # Before each validation, BatchNorm statistics are recomputed on this many training batches with the epoch's
    # final weights (0: keep the running averages, which lag behind weights that move fast).
    batchnorm_refresh_batches: int = ranged(16, 0, 10**6)

    def __post_init__(self) -> None:
        self.precision = normalize_precision(self.precision)
        _check_fields("training", self)
        check_choice("training.scheduler", self.scheduler, SCHEDULERS)
        if self.min_lr > self.lr:
            raise ConfigError(f"training.min_lr must be in [0, training.lr = {self.lr:g}], got {self.min_lr:g}")


SECTIONS = {"model": ModelConfig, "training": TrainingConfig, "loss": LossConfig, "data": DataConfig}
PATH_KEYS = ("data.data_dir", "data.grouping_file", "data.disk_cache_dir", "model.pretrained_weights")


def _check_fields(section: str, values: Any) -> None:
    """Every number of a section in its declared range, and every text fit for a file name, a log line and a JSON
    file (no NUL character, valid UTF-8)."""
    for item in dataclasses.fields(values):
        name, value = f"{section}.{item.name}", getattr(values, item.name)
        allowed = item.metadata.get("range")
        if allowed is not None and value is not None and not in_range(value, allowed):
            raise range_error(name, allowed, value)
        for text in _texts(value):
            check_text(name, text)
        if name in PATH_KEYS and isinstance(value, str) and not value.strip():  # "" would read as "." or as unset
            raise ConfigError(f"{name} is empty (an unset shell variable?): give a path, or leave the key out")


def _texts(value: Any) -> List[str]:
    """The strings a key holds: itself, or the items of a list."""
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def range_of(section_cls: type, key: str) -> Optional[Range]:
    """The range a numeric key allows; None for the others."""
    return next(item.metadata.get("range") for item in dataclasses.fields(section_cls) if item.name == key)


def _check_transformer_size(cfg: ModelConfig) -> None:
    """Refuse sizes whose product no machine holds, before anything is allocated (each is in range alone)."""
    feedforward = cfg.dim_feedforward or 4 * cfg.d_model
    weights = cfg.num_layers * (4 * cfg.d_model**2 + 2 * cfg.d_model * feedforward)  # attention + MLP, per layer
    if weights > MAX_TRANSFORMER_PARAMETERS:
        raise ConfigError(
            f"model.d_model {cfg.d_model}, model.num_layers {cfg.num_layers} and model.dim_feedforward "
            f"{feedforward} make a transformer of {weights / 1e6:.0f} million weights; the most allowed is "
            f"{MAX_TRANSFORMER_PARAMETERS / 1e6:.0f} million"
        )
