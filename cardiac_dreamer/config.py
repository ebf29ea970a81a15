"""Run configuration: dataclasses holding the production guide's defaults, loaded from YAML, overridden by flags.

Precedence is defaults < YAML < command-line flags. Every key and value is checked here, so a typo fails before
any data is read or any directory is made, with a message naming the key and the closest valid one. Every number
has an allowed range written beside its default (``ranged(default, low, high)``): NaN and infinities are in no
range, and the upper bounds keep a hostile or mistyped config (one stored in a checkpoint included) from asking
the machine for more memory than it has before anything is built.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import numbers
import os
import re
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from .errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"
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


@dataclass(frozen=True)
class Range:
    """The values a numeric key allows; ``str(Range)`` is the interval as error messages write it."""

    low: float
    high: float
    low_open: bool = False  # True: low itself is excluded
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:
        """False for NaN, which compares false with every bound."""
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def ranged(default: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    """A dataclass field whose value (unless None) must lie in ``[low, high]`` (ends excluded when ``*_open``)."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open)})


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


@dataclass
class Config:
    """A whole run: the four sections of the YAML file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        pretrain = self.training.pretrain_epochs
        if pretrain and pretrain >= self.training.max_epochs:
            raise ConfigError(f"training.pretrain_epochs ({pretrain}) must be below training.max_epochs "
                              f"({self.training.max_epochs}): the epochs after it fine-tune with the labels")
        if pretrain and (self.model.variant != "dreamer" or self.loss.lambda_latent == 0):
            raise ConfigError("training.pretrain_epochs trains the world model's latent term: it needs "
                              "model.variant dreamer and loss.lambda_latent > 0")

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict of primitives (what checkpoints and experiment_config.json store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "Config":
        """Build and validate a config from a nested dict; missing keys keep their defaults."""
        return merge(cls(), values, source)

    @classmethod
    def from_stored(cls, values: Mapping[str, Any], source: str = "config") -> "Config":
        """A config a run stored (a checkpoint's, experiment_config.json, a cross-validation plan): as
        :meth:`from_dict`, but a key added since it was stored (:data:`_BEFORE_THE_KEY`) keeps what the run was
        trained with, so an older run resumes and evaluates as it was trained."""
        return merge(cls(), _with_earlier_meanings(values), source)


# Keys added after configs were first stored, and what a stored config that lacks one was trained with.
_BEFORE_THE_KEY = {("loss", "latent_prediction"): "features"}


def _with_earlier_meanings(values: Mapping[str, Any]) -> Mapping[str, Any]:
    """``values`` with the keys of :data:`_BEFORE_THE_KEY` filled in where their section is stored without them
    (anything but a mapping is left for :func:`merge` to refuse)."""
    if not isinstance(values, Mapping):
        return values
    filled = dict(values)
    for (section, key), meaning in _BEFORE_THE_KEY.items():
        if isinstance(values.get(section), Mapping) and key not in values[section]:
            filled[section] = {**values[section], key: meaning}
    return filled


# Keys the guide shows in a section other than ours; accepted where they are written.
_SECTION_ALIASES = {("model", "lr"): ("training", "lr"), ("model", "weight_decay"): ("training", "weight_decay")}
_PRECISIONS = {
    "32": "32", "32-true": "32", "fp32": "32",
    "16": "16", "16-mixed": "16", "fp16": "16",
    "bf16": "bf16", "bf16-mixed": "bf16",
}


def normalize_precision(value: Any, name: str = "training.precision") -> str:
    """Map the spellings users write (16, "16-mixed", "bf16") to one of "32", "16", "bf16"; ``name`` is what the
    error calls the setting."""
    key = str(value).strip().lower()
    if key not in _PRECISIONS:
        raise ConfigError(f"{name} must be 32, 16 or bf16, got {reprlib.repr(value)}")
    return _PRECISIONS[key]


def merge(config: Config, values: Mapping[str, Any], source: str = "config") -> Config:
    """Return a new config: ``config`` with the nested ``values`` laid over it, every key and type checked."""
    return merge_layers(config, [(values, source)])


def merge_layers(config: Config, layers: Sequence[Tuple[Mapping[str, Any], str]]) -> Config:
    """``config`` with each ``(nested values, source)`` laid over it in turn, each key and type checked as it comes
    (errors name its source), and the rules between keys (d_model and num_heads, min_lr and lr) checked once, on
    the result: a YAML file that the command line completes is not refused for what the command line changes."""
    sections = {f.name: dataclasses.asdict(getattr(config, f.name)) for f in dataclasses.fields(Config)}
    for values, source in layers:
        _lay(sections, values, source)
    try:
        return Config(**{name: _section_class(name)(**entries) for name, entries in sections.items()})
    except ConfigError as error:
        sources = " + ".join(dict.fromkeys(source for values, source in layers if values)) or "config"
        raise ConfigError(f"{sources}: {error}") from None


def _lay(sections: Dict[str, Dict[str, Any]], values: Mapping[str, Any], source: str) -> None:
    """Write the nested ``values`` into ``sections`` (plain dicts of each section's keys), each key and type
    checked."""
    if values is None:
        return
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections (model, training, loss, data)")
    for section, entries in values.items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section {section!r}{_elsewhere(section, sections)}")
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys to values")
        for key, value in entries.items():
            target_section, target_key = _SECTION_ALIASES.get((section, key), (section, key))
            known = sections[target_section]
            if target_key not in known:
                raise ConfigError(f"{source}: unknown key {section}.{key}{_elsewhere(key, sections, section)}")
            section_cls = _section_class(target_section)
            where = f"{source}: {section}.{key}"
            known[target_key] = _coerce(section_cls, target_key, value, where)
            allowed = _range_of(section_cls, target_key)  # out of range in any layer, even one a later layer fixes
            if allowed is not None and known[target_key] is not None and not _is_number_in(known[target_key], allowed):
                raise _range_error(where, allowed, known[target_key])


def _elsewhere(key: str, sections: Mapping[str, Mapping[str, Any]], section: Optional[str] = None) -> str:
    """The hint for an unknown ``key`` (of ``section``; a section name when None): where that key lives when
    another section has it (``lr`` is ``training.lr``), else the closest name."""
    homes = [name for name, keys in sections.items() if name != section and key in keys]
    if homes:
        return f" (it is {homes[0]}.{key})"
    return _suggest(key, sections if section is None else sections[section])


def nest_overrides(overrides: Mapping[str, Any], source: str = "command line") -> Dict[str, Dict[str, Any]]:
    """Flat ``{"section.key": value}`` overrides (from flags) as the nested mapping a YAML file holds."""
    nested: Dict[str, Dict[str, Any]] = {}
    for dotted, value in overrides.items():
        section, dot, key = str(dotted).partition(".")
        if not dot:
            raise ConfigError(f"{source}: {dotted!r} is not of the form section.key")
        nested.setdefault(section, {})[key] = value
    return nested


def apply_overrides(config: Config, overrides: Mapping[str, Any], source: str = "command line") -> Config:
    """Lay flat ``{"section.key": value}`` overrides (from flags) over ``config``; a ``None`` value sets the key to
    None (an optional key cleared, or refused where the key needs a value)."""
    return merge(config, nest_overrides(overrides, source), source)


# What the weights are: the model's shape and what it reads.
ARCHITECTURE_KEYS = (("model", "variant"), ("model", "backbone"), ("model", "token_type"), ("model", "d_model"),
                     ("model", "num_heads"), ("model", "num_layers"), ("model", "dim_feedforward"),
                     ("model", "sequence_frames"), ("data", "image_size"))
# What a run is from its first epoch: its architecture, and the settings whose state a resume restores from the
# checkpoint over the config (the optimizer's rate, decay and parameter groups, the schedule, the seed, the patients'
# split and subset), so that a change there would be recorded but never applied.
RUN_KEYS = ARCHITECTURE_KEYS + (
    ("model", "freeze_backbone_layers"), ("training", "lr"), ("training", "weight_decay"), ("training", "scheduler"), ("training", "warmup_epochs"),
    ("training", "plateau_factor"), ("training", "plateau_patience"), ("training", "min_lr"), ("training", "seed"),
    ("data", "manual_splits"), ("data", "train_patients"), ("data", "val_patients"), ("data", "test_patients"),
    ("data", "train_ratio"), ("data", "val_ratio"), ("data", "test_ratio"), ("data", "split_seed"),
    ("data", "label_fraction"), ("data", "max_pairs_per_patient"), ("data", "pair_gap_frames"),
    ("loss", "latent_prediction"))


# A schedule of optimizer steps (cosine, onecycle) is laid out by how many steps an epoch has: these set that.
STEP_SCHEDULE_KEYS = (("training", "batch_size"), ("training", "accumulate_grad_batches"))


def run_keys(scheduler: str) -> Tuple[Tuple[str, str], ...]:
    """What a run with ``scheduler`` cannot change on resume."""
    return RUN_KEYS + (STEP_SCHEDULE_KEYS if scheduler in STEP_SCHEDULERS else ())


def changed_keys(before: Config, after: Config, keys=RUN_KEYS) -> List[Tuple[str, Any, Any]]:
    """``[(section.key, before's value, after's value)]`` for each of ``keys`` whose value differs."""
    changes = []
    for section, key in keys:
        old, new = getattr(getattr(before, section), key), getattr(getattr(after, section), key)
        if old != new:
            changes.append((f"{section}.{key}", old, new))
    return changes


PATH_KEYS = ("data.data_dir", "data.grouping_file", "data.disk_cache_dir", "model.pretrained_weights")


def with_absolute_paths(config: Config) -> Config:
    """``config`` with those of its folder and file paths that exist from the current directory made absolute
    (symlinks kept), so that a run resumed from another directory reads what it read when it started. Others stay
    as written: a grouping file may name one inside the data directory, and a missing path is reported as given."""
    overrides = {}
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value and os.path.exists(value):
            overrides[key] = os.path.abspath(value)
    return apply_overrides(config, overrides, source="absolute paths")


def preset_names() -> List[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A preset name (``debug``, ``production``, ``small_data``: :func:`preset_names`) or a path to a YAML file. A
    preset's bare name means the preset: a folder of that name here is not a config, and a file of that name is
    refused as ambiguous (``./debug`` names the file)."""
    path = Path(name_or_path)
    if str(name_or_path) in preset_names():
        if path.is_file():
            raise ConfigError(f"{name_or_path}: both a preset and a file here; write ./{name_or_path} for the file")
        return PRESET_DIR / f"{name_or_path}.yaml"
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if path.is_file():
        return path
    if path.exists():  # a pipe or a device: reading it could block or never end
        raise ConfigError(f"{path}: is a special file (pipe, socket or device), not a config file")
    if path.suffix.lower() in (".yaml", ".yml"):
        # The guide writes configs/production.yaml; fall back to the shipped preset of that name.
        if (PRESET_DIR / path.name).is_file():
            return PRESET_DIR / path.name
        raise ConfigError(f"{path}: config file not found")
    raise ConfigError(f"{name_or_path}: no such config file or preset (presets: {', '.join(preset_names())})")


class ConfigLoader(yaml.SafeLoader):
    """YAML as people write configs. A key written twice is an error: PyYAML keeps the last one, so a second
    ``training:`` block silently reset every key of the first. Integers are YAML 1.2's: decimal unless written
    ``0x`` or ``0o`` (YAML 1.1 read a seed of ``042`` as octal 34 and ``12:30`` as 750), ``1_000`` allowed."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *defaults, which later keys may override
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # the mapping refuses it below
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is written twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_INT = "tag:yaml.org,2002:int"
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _INT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$"),
                                   list("-+0123456789"))


def _integer(loader: ConfigLoader, node) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


ConfigLoader.add_constructor(_INT, _integer)


def parse_yaml(text: str) -> Any:
    """``text`` read by :class:`ConfigLoader`; raises ``yaml.YAMLError`` (or ValueError, RecursionError)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader)


def canonical_key(dotted: str) -> str:
    """``section.key`` as the config holds it: ``model.lr`` is ``training.lr``."""
    section, _, key = dotted.partition(".")
    return ".".join(_SECTION_ALIASES.get((section, key), (section, key)))


def parse_override(dotted: str, text: str) -> Any:
    """The value of ``--set section.key=text``: YAML (0.05, true, null, [a, b]), except that a key holding text
    (a path, a list of patient names) takes the text as written (quotes aside), so a patient named 007 stays
    ``'007'``."""
    name = canonical_key(dotted)
    section, _, key = name.partition(".")
    hint = typing.get_type_hints(_SECTIONS[section]).get(key) if section in _SECTIONS else None
    if hint not in (str, Optional[str], List[str]):
        return parse_yaml(text)
    stripped = text.strip()
    if not stripped and name in PATH_KEYS:  # an unset shell variable; clearing the key silently could drop a grouping
        raise ConfigError(f"--set {name}= is empty (an unset shell variable?): give a path, or null to clear it")
    if stripped in ("null", "~", ""):
        return None
    quoted = len(stripped) > 1 and stripped[0] == stripped[-1] and stripped[0] in "'\""
    if hint is List[str] or quoted:
        return yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 (every value a string)
    return text


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    try:
        values = parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as error:  # a scalar YAML resolves to a type it cannot build, e.g. the date 2024-13-45
        raise ConfigError(f"{path}: invalid YAML value: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, training, loss, data)")
    return values


def load_config(name_or_path: Union[str, Path, None] = None) -> Config:
    """Defaults, with a preset or YAML file laid over them when one is given."""
    if name_or_path is None:
        return Config()
    path = resolve_config_path(name_or_path)
    return merge(Config(), load_yaml(path), source=str(path))


_SECTIONS = {"model": ModelConfig, "training": TrainingConfig, "loss": LossConfig, "data": DataConfig}


def _section_class(name: str) -> type:
    return _SECTIONS[name]


def _coerce(section_cls: type, key: str, value: Any, where: str) -> Any:
    """Check ``value`` against the annotated type of ``section_cls.key``; ints are accepted for floats."""
    hint = typing.get_type_hints(section_cls)[key]
    optional = typing.get_origin(hint) is Union and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if key == "precision":
        return normalize_precision(value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:  # YAML reads "2e-4" (no dot) as a string; NaN and infinities are left to the range check
                return float(value)
            except ValueError:
                pass
            except OverflowError:  # an integer beyond any float
                raise _range_error(where, _range_of(section_cls, key), value) from None
    elif hint is str:
        if key == "disk_cache" and (value is False or str(value).lower() in ("false", "no")):
            return "off"  # YAML 1.1 reads the bare word off as false, and --set keeps the text
        if isinstance(value, (str, Path)):
            return str(value)
    elif typing.get_origin(hint) in (list, List):
        if value is None:  # null clears a list, as it clears an optional key
            return []
        if isinstance(value, str):
            try:
                return name_list(value)
            except ConfigError as problem:
                raise ConfigError(f"{where}: {problem}") from None
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return list(value)
        if isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list of names, got {reprlib.repr(value)} (quote names that look "
                              "like numbers: ['001', '002'])")
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where} must be of type {type_name}, got {reprlib.repr(value)}")


def whole_number(value: Any, name: str, lowest: int = 1, highest: Optional[int] = None) -> int:
    """``value`` as a plain int when it is a whole number in ``lowest..highest`` (no upper bound when None); else
    ConfigError naming ``name``. Why checked where it is given: a batch size of 0 or 2.5 fails later inside torch or
    ``range``, far from its cause, and a phantom seed of 1.7 read as 1 builds another heart."""
    if not is_whole(value) or value < lowest or (highest is not None and value > highest):
        limits = f">= {lowest}" if highest is None else f"in {lowest}..{highest:,}"
        raise ConfigError(f"{name} must be a whole number {limits}, got {value!r}")
    return int(value)


def is_whole(value: Any) -> bool:
    """An int or numpy integer; not a bool (True patients), not a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def name_list(text: str) -> List[str]:
    """The names in one line of comma-separated text, as ``--set`` and the command line take patients, each without
    the spaces around it: ``a, b`` -> ``['a', 'b']``. Why the quotes: a patient folder's name may hold a comma; in
    double quotes (``"a,b", c``) it stays one name, as in a CSV file. ConfigError naming the text when a quote is
    left open."""
    closed = re.sub(r'"\s+(?=,|$)', '"', text.strip())  # spaces after a closing quote, which CSV refuses
    try:
        names = next(csv.reader([closed], skipinitialspace=True, strict=True), [])
    except csv.Error:
        problem = "holds a line break" if "\n" in text or "\r" in text else "has a double quote that is not closed " \
            "right before a comma or the end"
        raise ConfigError(f"{reprlib.repr(text)} {problem} (names are separated by commas; write a name that "
                          'holds a comma in double quotes: "a,b",c)') from None
    return [name.strip() for name in names if name.strip()]


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def check_choice(name: str, value: str, choices, suggest: bool = False) -> None:
    """ConfigError ``"<name> must be one of a, b, got 'c'"`` (``suggest``: with a "did you mean") unless ``value``
    is one of ``choices``: every setting that names a choice says so in the same words."""
    if value not in choices:
        close = suggest and difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {reprlib.repr(value)}{hint}")


def _check_fields(section: str, values: Any) -> None:
    """Every number of a section in its declared range, and every text fit for a file name, a log line and a JSON
    file (no NUL character, valid UTF-8)."""
    for item in dataclasses.fields(values):
        name, value = f"{section}.{item.name}", getattr(values, item.name)
        allowed = item.metadata.get("range")
        if allowed is not None and value is not None and not _is_number_in(value, allowed):
            raise _range_error(name, allowed, value)
        for text in _texts(value):
            _check_text(name, text)
        if name in PATH_KEYS and isinstance(value, str) and not value.strip():  # "" would read as "." or as unset
            raise ConfigError(f"{name} is empty (an unset shell variable?): give a path, or leave the key out")


def _texts(value: Any) -> List[str]:
    """The strings a key holds: itself, or the items of a list."""
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _is_number_in(value: Any, allowed: Range) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value in allowed


def _range_error(name: str, allowed: Range, value: Any) -> ConfigError:
    return ConfigError(f"{name} must be in {allowed}, got {reprlib.repr(value)}")


def _range_of(section_cls: type, key: str) -> Optional[Range]:
    """The range a numeric key allows; None for the others."""
    return next(item.metadata.get("range") for item in dataclasses.fields(section_cls) if item.name == key)


def _check_text(name: str, text: str) -> None:
    if "\0" in text:
        raise ConfigError(f"{name} contains a NUL character: {reprlib.repr(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, smuggled in as surrogates (a command-line argument)
        raise ConfigError(f"{name} is not valid UTF-8 text: {reprlib.repr(text)}") from None


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


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"
