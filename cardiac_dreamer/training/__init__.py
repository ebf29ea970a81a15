"""Training: the loop, its schedules and stopping rule, gradient steps, checkpoint ranking, logs and torchrun."""
from .trainer import FitResult, Trainer, TrainingDiverged

__all__ = ["FitResult", "Trainer", "TrainingDiverged"]
