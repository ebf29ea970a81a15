"""cardiac_dreamer: world models for echocardiography probe guidance, in plain PyTorch.

The public API for notebooks::

    from cardiac_dreamer import CardiacDreamer, TransitionsDataset, Trainer, load_model, Config, load_config
"""

__version__ = "0.1.0"

from .config import Config, DataConfig, LossConfig, ModelConfig, TrainingConfig, load_config  # noqa: E402
from .data import NormalizationStats, PatientSplit, TransitionsDataset, prepare_data  # noqa: E402
from .evaluation import Predictor, evaluate_checkpoint, load_model  # noqa: E402
from .experiment import run_training  # noqa: E402
from .models import CardiacDreamer  # noqa: E402
from .training.trainer import Trainer  # noqa: E402

__all__ = [
    "CardiacDreamer", "Config", "DataConfig", "LossConfig", "ModelConfig", "NormalizationStats", "PatientSplit",
    "Predictor", "Trainer", "TrainingConfig", "TransitionsDataset", "evaluate_checkpoint", "load_config",
    "load_model", "prepare_data", "run_training", "__version__",
]
