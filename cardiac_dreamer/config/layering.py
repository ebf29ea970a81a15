"""A whole run's :class:`Config`, and how values are laid over it: defaults < YAML < command-line flags.

Every key and value is checked as it is laid, so a typo fails before any data is read or any directory is made,
with a message naming its source, the key and the closest valid one.
"""
from __future__ import annotations

import dataclasses
import os
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import ConfigError
from .sections import PATH_KEYS, SECTIONS, DataConfig, LossConfig, ModelConfig, TrainingConfig, range_of
from .values import in_range, name_list, normalize_precision, range_error, suggestion


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
        return Config(**{name: SECTIONS[name](**entries) for name, entries in sections.items()})
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
            section_cls = SECTIONS[target_section]
            where = f"{source}: {section}.{key}"
            known[target_key] = _coerce(section_cls, target_key, value, where)
            allowed = range_of(section_cls, target_key)  # out of range in any layer, even one a later layer fixes
            if allowed is not None and known[target_key] is not None and not in_range(known[target_key], allowed):
                raise range_error(where, allowed, known[target_key])


def _elsewhere(key: str, sections: Mapping[str, Mapping[str, Any]], section: Optional[str] = None) -> str:
    """The hint for an unknown ``key`` (of ``section``; a section name when None): where that key lives when
    another section has it (``lr`` is ``training.lr``), else the closest name."""
    homes = [name for name, keys in sections.items() if name != section and key in keys]
    if homes:
        return f" (it is {homes[0]}.{key})"
    return suggestion(key, sections if section is None else sections[section])


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
                raise range_error(where, range_of(section_cls, key), value) from None
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


def canonical_key(dotted: str) -> str:
    """``section.key`` as the config holds it: ``model.lr`` is ``training.lr``."""
    section, _, key = dotted.partition(".")
    return ".".join(_SECTION_ALIASES.get((section, key), (section, key)))


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
