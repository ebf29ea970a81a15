"""Evaluation: metrics in physical units, the evaluator behind ``cardiac-evaluate``, the Predictor for notebooks."""
from .evaluator import EvaluationReport, evaluate, evaluate_checkpoint, write_report
from .predictor import Predictor, load_model

__all__ = ["EvaluationReport", "Predictor", "evaluate", "evaluate_checkpoint", "load_model", "write_report"]
