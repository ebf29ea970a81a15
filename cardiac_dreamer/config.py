"""Run configuration: dataclasses holding the production guide's defaults, loaded from YAML, overridden by flags.

Precedence is defaults < YAML < command-line flags. Every key and value is checked here, so a typo fails before
any data is read or any directory is made, with a message naming the key and the closest valid one.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import yaml

from .errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class ModelConfig:
    """Architecture of :class:`~cardiac_dreamer.models.CardiacDreamer`."""

    variant: str = "dreamer"  # "dreamer" (world model) or "direct" (image alone, the ablation baseline)
    token_type: str = "channel"  # "channel": 512 tokens of h*w values; "spatial": h*w tokens of 512
    d_model: int = 768
    num_heads: int = 12
    num_layers: int = 6
    dim_feedforward: Optional[int] = None  # None means 4 * d_model
    dropout: float = 0.1
    composition: str = "additive"  # how at1 follows from at2 and the move: "additive" or "se3"
    pretrained: bool = False  # ImageNet weights for the backbone, from pretrained_weights or the torch cache
    pretrained_weights: Optional[str] = None
    freeze_backbone_layers: int = 0  # 0-5: 1 freezes the stem, k the stem and the first k-1 residual stages

    def __post_init__(self) -> None:
        _check_choice("model.variant", self.variant, ("dreamer", "direct"))
        _check_choice("model.token_type", self.token_type, ("channel", "spatial"))
        _check_choice("model.composition", self.composition, ("additive", "se3"))
        _check_positive("model.d_model", self.d_model)
        _check_positive("model.num_heads", self.num_heads)
        _check_positive("model.num_layers", self.num_layers)
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.freeze_backbone_layers <= 5:
            raise ConfigError(f"model.freeze_backbone_layers must be 0-5, got {self.freeze_backbone_layers}")


@dataclass
class LossConfig:
    """Weights of the SmoothL1 terms (pose errors divided by the training std of each axis)."""

    lambda_latent: float = 0.2  # dreamed t2 features vs the EMA target encoder's view of image t2
    lambda_t2_action: float = 1.0  # at2 predicted from the dreamed t2 features vs the at2 label
    lambda_consistency: float = 0.5  # at2 composed back through the move vs the image-only at1 (no label)
    smooth_l1_beta: float = 1.0
    primary_task_only: bool = False
    latent_target_momentum: float = 0.99  # EMA of the backbone that provides the latent target

    def __post_init__(self) -> None:
        if min(self.lambda_latent, self.lambda_t2_action, self.lambda_consistency) < 0:
            raise ConfigError("loss weights lambda_latent, lambda_t2_action and lambda_consistency must be >= 0")
        _check_positive("loss.smooth_l1_beta", self.smooth_l1_beta)
        if not 0.0 <= self.latent_target_momentum < 1.0:
            raise ConfigError(f"loss.latent_target_momentum must be in [0, 1), got {self.latent_target_momentum}")


@dataclass
class DataConfig:
    """Where the patient folders are and how patients are split."""

    data_dir: str = "data/processed"
    image_size: int = 224
    grouping_file: Optional[str] = None  # JSON {folder: patient_id} for several scans of one person
    manual_splits: bool = False
    train_patients: List[str] = field(default_factory=list)
    val_patients: List[str] = field(default_factory=list)
    test_patients: List[str] = field(default_factory=list)
    train_ratio: float = 0.70
    val_ratio: float = 0.15
    test_ratio: float = 0.15
    split_seed: int = 42
    cv_folds: int = 0  # >= 2 runs cross-patient k-fold cross-validation
    max_pairs_per_patient: Optional[int] = None  # a subset spread evenly over each folder's pairs
    label_fraction: float = 1.0  # label-scarce experiments: the labels of this fraction of the training patients
    # (at least one, seeded by split_seed) are used; the others' pairs train the world model as motion-only examples
    cache_images: bool = True  # keep decoded uint8 images in memory when they fit cache_budget_mb
    cache_budget_mb: int = 2048
    augment: bool = True  # photometric augmentation of training images (never geometric: it would change pose)

    def __post_init__(self) -> None:
        _check_positive("data.image_size", self.image_size)
        if self.image_size % 32:
            raise ConfigError(f"data.image_size must be a multiple of 32, got {self.image_size}")
        ratios = (self.train_ratio, self.val_ratio, self.test_ratio)
        if min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
            raise ConfigError(f"data split ratios must be >= 0 and sum to 1, got {ratios}")
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ConfigError(f"data.cv_folds must be 0 (off) or >= 2, got {self.cv_folds}")
        if self.max_pairs_per_patient is not None:
            _check_positive("data.max_pairs_per_patient", self.max_pairs_per_patient)
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {self.label_fraction}")


@dataclass
class TrainingConfig:
    """The optimisation loop: batch, precision, schedule, stopping, checkpoints, reproducibility."""

    batch_size: int = 16
    max_epochs: int = 150
    lr: float = 2e-4
    weight_decay: float = 0.01
    scheduler: str = "plateau"  # "plateau", "cosine" (with linear warmup), "onecycle" or "none"
    warmup_epochs: int = 1
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    min_lr: float = 1e-7
    early_stop_patience: int = 20
    min_delta: float = 0.0
    precision: str = "32"  # "32", "16" (fp16 on CUDA, bf16 on a capable CPU) or "bf16"
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = 1.0  # max gradient norm; None or 0 disables clipping
    num_workers: int = 2
    persistent_workers: bool = True
    device: str = "auto"  # "auto" (cuda, then mps, then cpu) or an explicit torch device
    seed: int = 42
    deterministic: bool = False
    save_top_k: int = 3
    log_every_n_steps: int = 10
    max_consecutive_nonfinite: int = 3  # skipped non-finite steps in a row before the run stops
    channels_last: bool = True
    compile: bool = False
    activation_checkpointing: bool = False  # recompute transformer activations in backward: less memory, more time

    def __post_init__(self) -> None:
        self.precision = normalize_precision(self.precision)
        _check_choice("training.scheduler", self.scheduler, ("plateau", "cosine", "onecycle", "none"))
        for name in ("batch_size", "max_epochs", "accumulate_grad_batches", "save_top_k", "log_every_n_steps"):
            _check_positive(f"training.{name}", getattr(self, name))
        _check_positive("training.lr", self.lr)
        if self.early_stop_patience < 0 or self.num_workers < 0 or self.warmup_epochs < 0:
            raise ConfigError("training.early_stop_patience, num_workers and warmup_epochs must be >= 0")
        if self.gradient_clip_val is not None and self.gradient_clip_val < 0:
            raise ConfigError(f"training.gradient_clip_val must be >= 0, got {self.gradient_clip_val}")


@dataclass
class Config:
    """A whole run: the four sections of the YAML file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict of primitives (what checkpoints and experiment_config.json store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "Config":
        """Build and validate a config from a nested dict; missing keys keep their defaults."""
        return merge(cls(), values, source)


# Keys the guide shows in a section other than ours; accepted where they are written.
_SECTION_ALIASES = {("model", "lr"): ("training", "lr"), ("model", "weight_decay"): ("training", "weight_decay")}
_PRECISIONS = {
    "32": "32", "32-true": "32", "fp32": "32",
    "16": "16", "16-mixed": "16", "fp16": "16",
    "bf16": "bf16", "bf16-mixed": "bf16",
}


def normalize_precision(value: Any) -> str:
    """Map the spellings users write (16, "16-mixed", "bf16") to one of "32", "16", "bf16"."""
    key = str(value).strip().lower()
    if key not in _PRECISIONS:
        raise ConfigError(f"training.precision must be 32, 16 or bf16, got {value!r}")
    return _PRECISIONS[key]


def merge(config: Config, values: Mapping[str, Any], source: str = "config") -> Config:
    """Return a new config: ``config`` with the nested ``values`` laid over it, every key and type checked."""
    if values is None:
        return config
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections (model, training, loss, data)")
    sections = {f.name: dataclasses.asdict(getattr(config, f.name)) for f in dataclasses.fields(Config)}
    for section, entries in values.items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section {section!r}{_suggest(section, sections)}")
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys to values")
        for key, value in entries.items():
            target_section, target_key = _SECTION_ALIASES.get((section, key), (section, key))
            known = sections[target_section]
            if target_key not in known:
                raise ConfigError(f"{source}: unknown key {section}.{key}{_suggest(key, known)}")
            section_cls = _section_class(target_section)
            known[target_key] = _coerce(section_cls, target_key, value, f"{source}: {section}.{key}")
    try:
        return Config(**{name: _section_class(name)(**entries) for name, entries in sections.items()})
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def apply_overrides(config: Config, overrides: Mapping[str, Any], source: str = "command line") -> Config:
    """Lay flat ``{"section.key": value}`` overrides (from flags) over ``config``; ``None`` values are skipped."""
    nested: Dict[str, Dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    return merge(config, nested, source)


def preset_names() -> List[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A preset name (``debug``, ``production``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        # The guide writes configs/production.yaml; fall back to the shipped preset of that name.
        if not path.exists() and (PRESET_DIR / path.name).exists():
            return PRESET_DIR / path.name
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ConfigError(
            f"{name_or_path}: no such config file or preset (presets: {', '.join(preset_names())})"
        )
    return preset


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
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
        return normalize_precision(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, Path)):
            return str(value)
    elif typing.get_origin(hint) in (list, List):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return list(value)
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where} must be of type {type_name}, got {value!r}")


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_positive(name: str, value) -> None:
    if value is None or value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
