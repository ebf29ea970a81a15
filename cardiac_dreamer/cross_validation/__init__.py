"""Cross-patient k-fold cross-validation, the world-model ablation and its baselines, on the same folds and seeds.

One train/val split of a handful of patients says little; k folds report every patient exactly once. Each fold's
reported patients are never used to choose anything: the fold's model is trained on the remaining patients but one,
and that *inner validation* patient picks the checkpoint (early stopping, the LR plateau, ``best.ckpt``), so the
figures are those of a model selected without seeing its test patients.

With ``compare`` both model variants (``dreamer``, ``direct``) train on the same folds with the same seeds, so the
difference between them is the world model and nothing else. Every summary also scores three baselines on the same
folds (see :mod:`cardiac_dreamer.evaluation.baselines`): the training mean, ``move_only``, an MLP from the move
alone, and ``pixel_ridge``, a ridge regression on pooled pixels of the fold's training patients.
``seeds`` > 1 repeats every fold with consecutive training seeds; means and stds are over folds x seeds.

The headline metric of every row is the *guidance*: at1 from the image alone, what a sonographer gets.
Layout of ``OUTPUT_DIR/cv_YYYYMMDD_HHMMSS/``::

    cv_plan.json                                   resolved config, variants, seeds, each fold's patients
    <variant>/fold_<i>/seed_<s>/run_*/              an ordinary run (checkpoints, logs, plots, fold_evaluation/)
    <variant>/fold_<i>/seed_<s>/fold_result.json    written last, atomically: finished (resume skips it)
    cv_summary.json, cv_summary.png, cv_summary.txt

Patients are patient ids (grouping-file groups), so the scans of one person never straddle folds. Held-out test
patients (``data.test_patients``) stay out of every fold and are scored by every fold's model; without them all
patients are in folds and there is no test group. Other manual-split lists are ignored: the folds decide.

:mod:`.plan` deals the folds, :mod:`.runner` trains and scores them and the baselines, :mod:`.summary` writes the
tables.
"""
from .plan import COMPARED_VARIANTS, PLAN_FILE, CrossValidationPlan, plan_cross_validation, read_plan
from .runner import RESULT_FILE, CrossValidationResult, baseline_results, fold_dir, run_cross_validation, run_fold
from .summary import METRICS, format_summary, run_labels, summarize, write_summary

__all__ = ["COMPARED_VARIANTS", "METRICS", "PLAN_FILE", "RESULT_FILE", "CrossValidationPlan", "CrossValidationResult",
           "baseline_results", "fold_dir", "format_summary", "plan_cross_validation", "read_plan",
           "run_cross_validation", "run_fold", "run_labels", "summarize", "write_summary"]
