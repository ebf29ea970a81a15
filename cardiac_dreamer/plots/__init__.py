"""Figures a run leaves behind: dataset statistics, training summary, evaluation and cross-validation plots.

Plain data in (lists, dicts, numpy arrays), one PNG out, the written path returned. The object API (``Figure`` +
Agg canvas) keeps pyplot's global state and a notebook user's backend untouched, and every file is written
atomically, so a crashed run never leaves a half-written PNG under the final name.

One module per family of figures (:mod:`.dataset`, :mod:`.training`, :mod:`.evaluation`, :mod:`.cross_validation`),
and :mod:`.common` for what they share.
"""
from .common import DEFAULT_DPI, figure, save_figure
from .cross_validation import plot_cv_summary
from .dataset import plot_dataset_statistics, split_overlap
from .evaluation import per_patient_mae_figure, plot_error_histograms, plot_per_patient_mae, plot_predicted_vs_true
from .training import plot_training_summary

__all__ = ["DEFAULT_DPI", "figure", "per_patient_mae_figure", "plot_cv_summary", "plot_dataset_statistics",
           "plot_error_histograms", "plot_per_patient_mae", "plot_predicted_vs_true", "plot_training_summary",
           "save_figure", "split_overlap"]
