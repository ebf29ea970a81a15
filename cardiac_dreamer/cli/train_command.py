"""``cardiac-train``: flags -> config -> :func:`cardiac_dreamer.experiment.run_training`.

The only place that knows about argparse, exit codes and printing for humans. Precedence: defaults < YAML
(``--config``) < flags; on ``--resume_from_checkpoint`` the stopped run's config takes the place of the defaults.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..config import Config, apply_overrides, load_yaml, merge, resolve_config_path
from ..errors import CardiacDreamerError, ConfigError, Interrupted
from ..names import MONITOR
from . import log_process_policies
from .common import EXIT_INTERRUPTED, configure_logging, report_error

DEMO_PATIENTS = 6  # the demo phantom: 4 train, 1 val, 1 test patient; 250 independent pairs each
# The demo on top of the debug preset: every pair of the phantom, enough epochs to learn it, bf16 where the CPU
# has it (fp32 otherwise), all within 5 minutes on 2 CPU cores.
DEMO_SETTINGS = {"data.max_pairs_per_patient": 250, "training.max_epochs": 8, "training.precision": "16"}

# flag name -> (config key, type, help)
CONFIG_FLAGS = {
    "data_dir": ("data.data_dir", str, "folder holding one sub-folder per patient"),
    "grouping_file": ("data.grouping_file", str, "JSON {folder: patient_id} for several scans of one person"),
    "image_size": ("data.image_size", int, "images are resized to this square size"),
    "train_patients": ("data.train_patients", str, "comma-separated patients for training (manual split)"),
    "val_patients": ("data.val_patients", str, "comma-separated patients for validation (manual split)"),
    "test_patients": ("data.test_patients", str, "comma-separated patients for testing (manual split)"),
    "variant": ("model.variant", str, "dreamer (world model) or direct (image alone)"),
    "token_type": ("model.token_type", str, "channel or spatial"),
    "d_model": ("model.d_model", int, "transformer width"),
    "num_heads": ("model.num_heads", int, "attention heads"),
    "num_layers": ("model.num_layers", int, "transformer layers"),
    "batch_size": ("training.batch_size", int, "samples per batch"),
    "max_epochs": ("training.max_epochs", int, "maximum number of epochs"),
    "lr": ("training.lr", float, "learning rate"),
    "precision": ("training.precision", str, "32, 16 or bf16"),
    "accumulate_grad_batches": ("training.accumulate_grad_batches", int, "batches per optimizer step"),
    "gradient_clip_val": ("training.gradient_clip_val", float, "max gradient norm (0 disables)"),
    "early_stop_patience": ("training.early_stop_patience", int, "epochs without improvement before stopping"),
    "scheduler": ("training.scheduler", str, "plateau, cosine, onecycle or none"),
    "num_workers": ("training.num_workers", int, "data-loading worker processes"),
    "device": ("training.device", str, "auto, cpu, cuda, cuda:1, mps"),
    "seed": ("training.seed", int, "one seed for everything"),
    "cv": ("data.cv_folds", int, "cross-patient K-fold cross-validation"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiac-train", description="Train a Cardiac Dreamer model with cross-patient splits.",
    )
    _add(parser, "--config", help="preset name (production, debug) or path to a YAML file")
    _add(parser, "--output_dir", help="where run directories are created (default: outputs)")
    _add(parser, "--resume_from_checkpoint", help="continue the run of this last.ckpt")
    _add(parser, "--manual_splits", action="store_true", default=None,
         help="use --train_patients/--val_patients/--test_patients instead of the automatic split")
    _add(parser, "--demo", action="store_true",
         help="write the synthetic phantom into OUTPUT_DIR/demo_data and train the debug preset on it")
    _add(parser, "--deterministic", action="store_true", default=None, help="deterministic algorithms")
    _add(parser, "--no_progress", action="store_true", help="no progress bars")
    _add(parser, "--check_data", action="store_true",
         help="validate the data directory against every rule, print a summary, and exit without training")
    _add(parser, "--compare", action="store_true",
         help="with --cv: train both model variants (dreamer, direct) on the same folds and compare them")
    _add(parser, "--seeds", type=int, metavar="N",
         help="with --cv: repeat every fold with N consecutive training seeds (mean ± std over folds x seeds)")
    _add(parser, "--resume_cv", metavar="CV_DIR", help="continue a cross-validation run, skipping finished folds")
    _add(parser, "--benchmark", action="store_true",
         help="measure training throughput and memory for this config and print one JSON line")
    _add(parser, "--data_only", action="store_true",
         help="with --benchmark: measure the data loader alone (images/s, memory) with 0, 2 and 4 workers")
    _add(parser, "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
         help="any config key, e.g. --set training.weight_decay=0.05 (repeatable)")
    for flag, (key, kind, text) in CONFIG_FLAGS.items():
        _add(parser, f"--{flag}", type=kind, help=f"{text} ({key})")
    return parser


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Every flag also answers to its hyphenated spelling (``--data-dir``)."""
    names = [flag] + ([flag.replace("_", "-")] if "_" in flag else [])
    parser.add_argument(*names, dest=flag.lstrip("-"), **kwargs)


def flag_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The config values the user set on the command line, as ``{"section.key": value}``."""
    overrides = {key: getattr(args, flag) for flag, (key, _, _) in CONFIG_FLAGS.items()}
    if args.manual_splits or any(getattr(args, f) for f in ("train_patients", "val_patients", "test_patients")):
        overrides["data.manual_splits"] = True
    if args.deterministic:
        overrides["training.deterministic"] = True
    for assignment in args.set:
        key, sep, value = assignment.partition("=")
        if not sep or "." not in key:
            raise CardiacDreamerError(f"--set {assignment!r}: expected SECTION.KEY=VALUE")
        try:
            overrides[key.strip()] = yaml.safe_load(value)  # YAML scalars: 0.05, true, null, [a, b]
        except (yaml.YAMLError, ValueError, RecursionError):
            raise ConfigError(f"--set {assignment[:200]!r}: the value is not valid YAML") from None
    return {key: value for key, value in overrides.items() if value is not None}


def resolve_config(args: argparse.Namespace, base: Optional[Config] = None,
                   preset: Optional[Dict[str, Any]] = None) -> Config:
    """Defaults (or ``base``) < YAML < ``preset`` (the demo's settings) < flags."""
    config = base if base is not None else Config()
    if args.config:
        path = resolve_config_path(args.config)
        config = merge(config, load_yaml(path), source=str(path))
    if preset:
        config = apply_overrides(config, preset, source="--demo")
    return apply_overrides(config, flag_overrides(args))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    log_process_policies()
    try:
        return _train(args, list(sys.argv if argv is None else ["cardiac-train", *argv]))
    except Interrupted as stopped:
        print(f"interrupted; {stopped}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CardiacDreamerError as error:
        return report_error(error)
    except KeyboardInterrupt:
        if args.resume_cv or args.cv:
            print("interrupted; continue with: cardiac-train --resume_cv OUTPUT_DIR/cv_... (the cross-validation "
                  "directory printed when it started)", file=sys.stderr)
        else:
            print("interrupted before training started; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _train(args: argparse.Namespace, argv: List[str]) -> int:
    from ..checkpoint import load_training_state
    from ..pipeline import run_training

    output_dir = Path(args.output_dir or "outputs")
    resume = Path(args.resume_from_checkpoint) if args.resume_from_checkpoint else None
    if resume is not None:
        state = load_training_state(resume)
        config = resolve_config(args, base=Config.from_dict(state.config, source=f"{resume} config"))
        del state
    elif args.demo:
        config = _demo_config(args, output_dir)
    else:
        config = resolve_config(args)
    if args.check_data:
        from ..doctor import check_data

        print(check_data(config.data, composition=config.model.composition).summary())
        return 0
    if args.benchmark:
        from ..loader_throughput import measure_loader
        from ..throughput import run_benchmark

        for result in measure_loader(config) if args.data_only else [run_benchmark(config)]:
            print(json.dumps(result), flush=True)
        return 0
    if (args.compare or args.seeds) and not (args.resume_cv or config.data.cv_folds):
        raise CardiacDreamerError("--compare and --seeds apply to cross-validation folds: add --cv K")
    if args.resume_cv or config.data.cv_folds:
        from ..cross_validation import run_cross_validation

        cv = run_cross_validation(config, output_dir, compare=args.compare, resume_dir=args.resume_cv,
                                  argv=argv, progress=not args.no_progress, seeds=args.seeds or 1)
        print(f"cross-validation directory: {cv.cv_dir}")
        print(cv.summary_table())
        return 0
    outcome = run_training(config, output_dir=output_dir, resume_from=resume, argv=argv,
                           progress=not args.no_progress)
    fit = outcome.fit
    print(f"run directory: {outcome.run_dir}")
    if fit.best_checkpoint is not None:
        print(f"best checkpoint: {fit.best_checkpoint} ({MONITOR} {fit.best_score:.4f})")
    print(f"epochs completed: {fit.epochs_completed} ({fit.stop_reason})")
    if outcome.test_report is not None:
        print(outcome.test_report.summary_table())
        print(f"test evaluation: {outcome.test_evaluation_dir}")
    return 0


def _demo_config(args: argparse.Namespace, output_dir: Path) -> Config:
    """The debug preset on the synthetic phantom in OUTPUT_DIR/demo_data (written once, then reused)."""
    from ..run_dir import ensure_writable
    from ..synthetic import generate_phantom

    if not args.config:
        args.config = "debug"
    config = resolve_config(args, preset=DEMO_SETTINGS)
    if args.data_dir is None:
        demo_data = output_dir / "demo_data"
        ensure_writable(output_dir)
        generate_phantom(demo_data, num_patients=DEMO_PATIENTS, image_size=config.data.image_size, seed=0)
        config = apply_overrides(config, {"data.data_dir": str(demo_data)})
    return config

