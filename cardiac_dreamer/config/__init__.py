"""Run configuration: dataclasses holding the production guide's defaults, loaded from YAML, overridden by flags.

Precedence is defaults < YAML < command-line flags. Every key and value is checked here, so a typo fails before
any data is read or any directory is made, with a message naming the key and the closest valid one.

:mod:`.values` checks one value, :mod:`.sections` declares the four sections' keys, :mod:`.layering` builds a
:class:`Config` from layers of values, :mod:`.files` reads presets and YAML files, :mod:`.resume` names what a
resumed run may not change. Import from here: the names below are the package's. The presets themselves
(production, debug, small_data) are YAML files in the package's ``configs/`` folder, beside this one.
"""
from .files import (
    PRESET_DIR, ConfigLoader, load_config, load_yaml, parse_override, parse_yaml, preset_names, resolve_config_path,
)
from .layering import Config, apply_overrides, canonical_key, merge, merge_layers, nest_overrides, with_absolute_paths
from .resume import ARCHITECTURE_KEYS, RUN_KEYS, STEP_SCHEDULE_KEYS, changed_keys, run_keys
from .sections import (
    BACKBONES, COMPOSITION_MODES, DISK_CACHE_MODES, LATENT_PREDICTIONS, MAX_SEED, MAX_TRANSFORMER_PARAMETERS, PATH_KEYS,
    PRECISIONS, SCHEDULERS, STEP_SCHEDULERS, TOKEN_TYPES, VARIANTS, DataConfig, LossConfig, ModelConfig, TrainingConfig,
)
from .values import Range, check_choice, is_whole, name_list, normalize_precision, ranged, whole_number

__all__ = [
    "ARCHITECTURE_KEYS", "BACKBONES", "COMPOSITION_MODES", "DISK_CACHE_MODES", "LATENT_PREDICTIONS", "MAX_SEED",
    "MAX_TRANSFORMER_PARAMETERS", "PATH_KEYS", "PRECISIONS", "PRESET_DIR", "RUN_KEYS", "SCHEDULERS",
    "STEP_SCHEDULERS", "STEP_SCHEDULE_KEYS", "TOKEN_TYPES", "VARIANTS", "Config", "ConfigLoader", "DataConfig",
    "LossConfig", "ModelConfig", "Range", "TrainingConfig", "apply_overrides", "canonical_key", "changed_keys",
    "check_choice", "is_whole", "load_config", "load_yaml", "merge", "merge_layers", "name_list", "nest_overrides",
    "normalize_precision", "parse_override", "parse_yaml", "preset_names", "ranged", "resolve_config_path",
    "run_keys", "whole_number", "with_absolute_paths",
]
