"""cardiac_dreamer: world models for echocardiography probe guidance, in plain PyTorch.

The public API for notebooks::

    from cardiac_dreamer import CardiacDreamer, TransitionsDataset, Trainer, load_model, Config, load_config
    from cardiac_dreamer import GuidanceSession  # real-time: GuidanceSession.from_checkpoint(path, history=4)

Names are imported on first use, so ``import cardiac_dreamer.evaluation`` (inference) does not load the trainer,
TensorBoard or matplotlib.
"""
from importlib import import_module as _import_module

from .version import __version__

_PUBLIC = {
    "CardiacDreamer": ".models",
    "build_model": ".models",
    "Config": ".config",
    "DataConfig": ".config",
    "LossConfig": ".config",
    "ModelConfig": ".config",
    "TrainingConfig": ".config",
    "load_config": ".config",
    "NormalizationStats": ".data",
    "PatientSplit": ".data",
    "TransitionsDataset": ".data",
    "prepare_data": ".data",
    "Predictor": ".evaluation",
    "evaluate_checkpoint": ".evaluation",
    "load_model": ".evaluation",
    "load_run": ".evaluation",
    "GuidanceSession": ".guidance.session",
    "run_training": ".pipeline",
    "Trainer": ".training",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cardiac_dreamer' has no attribute {name!r}")
    value = getattr(_import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    """The public names too, which load on first use, so a notebook's tab completion offers them."""
    return sorted(set(globals()) | set(__all__))
