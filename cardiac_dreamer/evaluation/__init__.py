"""Evaluation: metrics in physical units, the evaluator behind ``cardiac-evaluate``, the Predictor for notebooks,
and ``load_run``, the one reader of trained checkpoints."""
from .evaluator import evaluate, evaluate_checkpoint
from .loading import LoadedRun, load_run
from .predictor import Predictor, load_model
from .report import EvaluationReport
from .report_files import write_report

__all__ = ["EvaluationReport", "LoadedRun", "Predictor", "evaluate", "evaluate_checkpoint", "load_model", "load_run",
           "write_report"]
