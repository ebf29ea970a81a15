"""``cardiac-train``: flags -> config -> the mode they select, from :data:`MODES`.

The only place that knows about argparse, exit codes and printing for humans. Precedence: defaults < YAML
(``--config``) < flags; on ``--resume_from_checkpoint`` the stopped run's config takes the place of the defaults.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import yaml

from ..config import PRECISIONS, PRESET_DIR, SCHEDULERS, TOKEN_TYPES, VARIANTS, Config, \
    apply_overrides, canonical_key, load_config, load_yaml, merge_layers, nest_overrides, parse_override, \
    preset_names, resolve_config_path
from ..errors import CardiacDreamerError, ConfigError, DataError, Interrupted
from ..names import MONITOR
from . import log_process_policies
from .common import CommandParser, StoreOnce, a_path, add_flag, configure_logging, interrupted_exit_code, \
    report_error, sigterm_as_ctrl_c

DEMO_PATIENTS = 6  # the demo phantom (v4): 4 train, 1 val, 1 test patient; 250 sweep pairs each
# The demo on top of the debug preset: every pair of the phantom, enough epochs to learn it, bf16 where the CPU
# has it (fp32 otherwise), all within 5 minutes on 2 CPU cores.
DEMO_SETTINGS = {"data.max_pairs_per_patient": 250, "training.max_epochs": 8, "training.precision": "16",
                 # On phantom v4 (one seed, the same held-out patient; docs/objective.md): lr 2e-3 picked epoch 1
                 # and lost to the pixel ridge (1.09x its MAE); 5e-4 gave 0.87x with ResNet-34, 0.90x with ResNet-18,
                 # whose epochs are a third shorter.
                 "training.lr": 5e-4, "model.backbone": "resnet18",
                 # The latent predictor learns the EMA target's space only at this weight (at the guide's 0.2 the
                 # dreamed / copy ratio stayed at 1.01x; docs/objective.md).
                 "loss.lambda_latent": 1.0,
                 # The best epoch is a noisy pick on one validation patient; the mean of the top 3 weights gave
                 # 0.82x the pixel ridge over three seeds against 1.01x for the best epoch (docs/objective.md).
                 "training.average_top_k": True}

# --help group -> {flag name: (config key, type, help)}; each flag's default is Config's, shown in --help.
CONFIG_FLAGS = {
    "data": {
        "data_dir": ("data.data_dir", str, "folder holding one sub-folder per patient"),
        "grouping_file": ("data.grouping_file", str, "JSON {folder: patient_id} for several scans of one person"),
        "image_size": ("data.image_size", int, "images are resized to this square size, in pixels"),
        "train_patients": ("data.train_patients", str, "comma-separated patients for training (manual split)"),
        "val_patients": ("data.val_patients", str, "comma-separated patients for validation (manual split)"),
        "test_patients": ("data.test_patients", str, "comma-separated patients for testing (manual split)"),
    },
    "model": {
        "variant": ("model.variant", str, "dreamer (world model) or direct (image alone)"),
        "token_type": ("model.token_type", str, "channel: 512 tokens of h*w values; spatial: h*w tokens of 512"),
        "d_model": ("model.d_model", int, "transformer width"),
        "num_heads": ("model.num_heads", int, "attention heads"),
        "num_layers": ("model.num_layers", int, "transformer layers"),
    },
    "training": {
        "batch_size": ("training.batch_size", int, "samples per batch"),
        "max_epochs": ("training.max_epochs", int, "maximum number of epochs"),
        "lr": ("training.lr", float, "learning rate"),
        "precision": ("training.precision", str, "16: fp16 on CUDA, bf16 on a capable CPU"),
        "accumulate_grad_batches": ("training.accumulate_grad_batches", int, "batches per optimizer step"),
        "gradient_clip_val": ("training.gradient_clip_val", float, "max gradient norm (0 disables)"),
        "early_stop_patience": ("training.early_stop_patience", int, "epochs without improvement before stopping"),
        "scheduler": ("training.scheduler", str, "the learning-rate schedule (cosine: with linear warmup)"),
        "num_workers": ("training.num_workers", int, "data-loading worker processes"),
        "device": ("training.device", str, "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps"),
        "seed": ("training.seed", int, "one seed for everything"),
    },
    "modes": {
        "cv": ("data.cv_folds", int, "cross-patient K-fold cross-validation (K >= 2) instead of one run"),
    },
}
FLAG_KEYS = {flag: key for flags in CONFIG_FLAGS.values() for flag, (key, _, _) in flags.items()}
# Values the config accepts for a flag, listed in --help; the config checks them (and takes spellings like 16-mixed).
CHOICES = {"variant": VARIANTS, "token_type": TOKEN_TYPES, "precision": PRECISIONS, "scheduler": SCHEDULERS}
GROUP_TITLES = {
    "modes": "modes (one at a time; plain training without any)",
    "configuration": "configuration (defaults < --config < --set and the flags below)",
    "data": "data", "model": "model", "training": "training", "output": "output",
}


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="cardiac-train",
        description="Train a Cardiac Dreamer model with cross-patient splits. Without data, try "
        "`cardiac-train --demo`: it writes a synthetic phantom and trains on it in minutes.",
    )
    groups = {name: parser.add_argument_group(title) for name, title in GROUP_TITLES.items()}
    modes = groups["modes"]
    add_flag(modes, "--demo", action="store_true",
             help="write the synthetic phantom into OUTPUT_DIR/demo_data (or use --data_dir) and train the debug "
             "preset on it; combines with --check_data, --benchmark and --cv")
    add_flag(modes, "--check_data", action="store_true",
             help="validate the data directory against every rule, print a summary, and exit without training "
             "(with --cv K: the folds cross-validation would train)")
    add_flag(modes, "--benchmark", action="store_true",
             help="measure training throughput and memory for this config and print one JSON line")
    add_flag(modes, "--data_only", action="store_true",
             help="with --benchmark: measure the data loader alone (images/s, memory) with 0, 2 and 4 workers")
    add_flag(modes, "--resume_from_checkpoint", metavar="LAST_CKPT", type=a_path,
             help="continue the run of this last.ckpt (flags given override its stored config)")
    add_flag(modes, "--resume_cv", metavar="CV_DIR", type=a_path,
             help="continue a cross-validation run, skipping finished folds")
    _add_config_flags(modes, CONFIG_FLAGS["modes"], metavar="K")
    add_flag(modes, "--compare", action="store_true",
             help="with --cv: train both model variants (dreamer, direct) on the same folds and compare them")
    add_flag(modes, "--seeds", type=int, metavar="N",
             help="with --cv: repeat every fold with N consecutive training seeds (mean ± std over folds x seeds)")

    configuration = groups["configuration"]
    add_flag(configuration, "--config", metavar="PRESET_OR_YAML", action=StoreOnce, type=a_path,
             help=f"preset name ({', '.join(preset_names())}) or path to a YAML file (default: the guide's values)")
    add_flag(configuration, "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
             help="any config key, e.g. --set training.weight_decay=0.05 (repeatable)")

    add_flag(groups["data"], "--manual_splits", action="store_true", default=None,
             help="use --train_patients/--val_patients/--test_patients instead of the automatic 70/15/15 split "
                  "(default: off; data.manual_splits)")
    add_flag(groups["training"], "--deterministic", action="store_true", default=None,
             help="deterministic algorithms (default: off; training.deterministic)")
    for section in ("data", "model", "training"):
        _add_config_flags(groups[section], CONFIG_FLAGS[section])

    add_flag(groups["output"], "--output_dir", type=a_path,
             help="where run directories are created (default: outputs)")
    add_flag(groups["output"], "--no_progress", action="store_true", help="no progress bars")
    return parser


def _add_config_flags(group, flags: Dict[str, tuple], metavar: Optional[str] = None) -> None:
    """One flag per config key: its choices as the metavar, its help ending with the config's default."""
    defaults = Config().to_dict()
    for flag, (key, kind, text) in flags.items():
        section, name = key.split(".")
        default = defaults[section][name]
        shown = "{" + ",".join(CHOICES[flag]) + "}" if flag in CHOICES else metavar
        add_flag(group, f"--{flag}", type=kind, metavar=shown,
                 help=f"{text} (default: {default if default or default == 0 else 'none'}; {key})")


def flag_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The config values the user set on the command line, as ``{"section.key": value}``: the flags given (a flag
    left out is None) and every ``--set``, whose ``null`` clears an optional key."""
    overrides = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None}
    if args.manual_splits:
        overrides["data.manual_splits"] = True
    if args.deterministic:
        overrides["training.deterministic"] = True
    for assignment in args.set:  # after the flags, in order: for one key, the last --set wins
        written, sep, value = assignment.partition("=")
        if not sep or "." not in written:
            raise ConfigError(f"--set {assignment!r}: expected SECTION.KEY=VALUE")
        key = canonical_key(written.strip())  # model.lr is training.lr, so it replaces --lr as training.lr does
        try:
            overrides[key] = parse_override(key, value)
        except ConfigError:  # already says what is wrong with the value
            raise
        except (yaml.YAMLError, ValueError, RecursionError):
            raise ConfigError(f"--set {assignment[:200]!r}: the value is not valid YAML") from None
    return overrides


def resolve_config(args: argparse.Namespace, base: Optional[Config] = None,
                   preset: Optional[Dict[str, Any]] = None) -> Config:
    """Defaults (or ``base``) < YAML < ``preset`` (the demo's settings) < flags, checked as one config."""
    layers = []
    if args.config:
        path = resolve_config_path(args.config)
        layers.append((load_yaml(path), str(path)))
    if preset:
        layers.append((nest_overrides(preset, "--demo"), "--demo"))
    layers.append((nest_overrides(flag_overrides(args)), "command line"))
    return merge_layers(base if base is not None else Config(), layers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = selected_mode(parser, args)
    configure_logging()
    log_process_policies()
    with sigterm_as_ctrl_c():
        return _run(args, chosen, list(sys.argv if argv is None else ["cardiac-train", *argv]))


def _run(args: argparse.Namespace, chosen: Optional["Mode"], argv: List[str]) -> int:
    """The chosen mode, with every ending (an error, Ctrl-C, SIGTERM) turned into its message and exit code."""
    try:
        if args.resume_cv and (args.config or args.output_dir is not None or flag_overrides(args)):  # ignored
            given = "--config" if args.config else "--output_dir" if args.output_dir is not None else next(
                iter(flag_overrides(args)))
            raise CardiacDreamerError(f"{given}: --resume_cv runs the plan stored in {args.resume_cv}, whose folds "
                                      "keep the settings they started with; leave it out, or start a new --cv")
        config = _config(args, chosen)
        mode = chosen or (CROSS_VALIDATION if config.data.cv_folds else TRAINING)
        if (args.compare or args.seeds is not None) and mode is not CROSS_VALIDATION:
            flag = "--compare" if args.compare else "--seeds"
            if args.resume_cv:
                raise CardiacDreamerError(f"{flag}: --resume_cv keeps the variants and seeds of the plan stored in "
                                          f"{args.resume_cv}; leave {flag} out")
            if chosen is not None:  # --check_data --cv K, --benchmark: no folds are trained
                raise CardiacDreamerError(f"{flag} applies to training cross-validation folds, not to --{chosen.flag}")
            raise CardiacDreamerError(f"{flag} applies to cross-validation folds: add --cv K")
        return mode.run(args, config, argv)
    except Interrupted as stopped:
        print(f"interrupted; {stopped}", file=sys.stderr)
        return interrupted_exit_code()
    except CardiacDreamerError as error:
        return report_error(error)
    except KeyboardInterrupt:
        if args.resume_cv or args.cv:
            print("interrupted; continue with: cardiac-train --resume_cv OUTPUT_DIR/cv_... (the cross-validation "
                  "directory printed when it started)", file=sys.stderr)
        else:
            print("interrupted before training started; nothing was written", file=sys.stderr)
        return interrupted_exit_code()


def _config(args: argparse.Namespace, mode: Optional["Mode"]) -> Config:
    """The resumed run's config, the demo's, or defaults < YAML < flags with a data directory that exists."""
    if args.resume_from_checkpoint:
        from ..io.checkpoint import load_training_state

        resume = Path(args.resume_from_checkpoint)
        stored = load_training_state(resume).config
        return resolve_config(args, base=Config.from_stored(stored, source=f"{resume} config"))
    if args.demo:
        return _demo_config(args, _output_dir(args))
    config = resolve_config(args)
    if (mode is None or mode.reads_data) and not Path(config.data.data_dir).exists():
        raise DataError(f"{config.data.data_dir}: data directory not found; try `cardiac-train --demo` (a synthetic "
                        "phantom, no data needed) or give yours with --data_dir DIR")
    return config


def _output_dir(args: argparse.Namespace) -> Path:
    return Path(args.output_dir or "outputs")


def _check_data(args: argparse.Namespace, config: Config, argv: List[str]) -> int:
    from ..doctor import check_data

    print(check_data(config.data, composition=config.model.composition,
                     sequence_frames=config.model.sequence_frames).summary())
    return 0


def _benchmark(args: argparse.Namespace, config: Config, argv: List[str]) -> int:
    from ..benchmarking.loader_throughput import measure_loader
    from ..benchmarking.throughput import run_benchmark

    for result in measure_loader(config) if args.data_only else [run_benchmark(config)]:
        print(json.dumps(result), flush=True)
    return 0


def _cross_validate(args: argparse.Namespace, config: Config, argv: List[str]) -> int:
    from ..cross_validation import run_cross_validation

    cv = run_cross_validation(config, _output_dir(args), compare=args.compare, resume_dir=args.resume_cv,
                              argv=argv, progress=not args.no_progress, seeds=1 if args.seeds is None else args.seeds)
    print(f"cross-validation directory: {cv.cv_dir}")
    print(cv.summary_table())
    return 0


def _train(args: argparse.Namespace, config: Config, argv: List[str]) -> int:
    from ..pipeline import run_training
    from ..training import distributed as dist

    output_dir = _output_dir(args)
    resume = Path(args.resume_from_checkpoint) if args.resume_from_checkpoint else None
    if resume is not None and args.output_dir is not None and dist.is_main_process():
        logging.getLogger(__name__).warning("--output_dir %s is not used: a resumed run continues in its own "
                                            "directory", args.output_dir)
    outcome = run_training(config, output_dir=output_dir, resume_from=resume, argv=argv,
                           progress=not args.no_progress)
    if not dist.is_main_process():  # under torchrun rank 0 speaks for the run, once
        return 0
    fit = outcome.fit
    print(f"run directory: {outcome.run_dir}")
    if fit.best_checkpoint is not None:
        print(f"best checkpoint: {fit.best_checkpoint} ({MONITOR} {fit.best_score:.4f})")
    if fit.averaged_checkpoint is not None:
        print(f"averaged checkpoint: {fit.averaged_checkpoint} (the mean of the top-k weights; evaluated below)")
    print(f"epochs completed: {fit.epochs_completed} ({fit.stop_reason})")
    if outcome.test_report is not None:
        print(outcome.test_report.summary_table())
        print(f"test evaluation: {outcome.test_evaluation_dir}")
    return 0


@dataclass(frozen=True)
class Mode:
    """What ``cardiac-train`` does: ``flag`` selects it (None: the default), ``run(args, config, argv)`` does it."""

    flag: Optional[str]
    run: Callable[[argparse.Namespace, Config, List[str]], int]
    with_demo: bool = True  # --demo may supply its data
    reads_data: bool = True  # reads the configured data directory (a resume reads what its run recorded)


TRAINING = Mode(None, _train)
CROSS_VALIDATION = Mode("cv", _cross_validate)
MODES = (
    Mode("check_data", _check_data),
    Mode("benchmark", _benchmark),
    CROSS_VALIDATION,
    Mode("resume_cv", _cross_validate, with_demo=False, reads_data=False),
    Mode("resume_from_checkpoint", _train, with_demo=False, reads_data=False),
)
NEEDS = {"data_only": "benchmark"}  # flag -> the mode it only modifies


def selected_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Optional[Mode]:
    """The mode the flags select (None: plain training, or cross-validation when the config asks for folds); two
    modes at once, --demo where it has no place, or a modifier without its mode is a usage error naming both."""
    chosen = [mode for mode in MODES if getattr(args, mode.flag) not in (None, False, 0)]
    if args.check_data and CROSS_VALIDATION in chosen:  # --check_data --cv K checks the folds --cv K would train
        chosen.remove(CROSS_VALIDATION)
    if len(chosen) > 1:
        parser.error(f"--{chosen[0].flag} and --{chosen[1].flag} are different modes: choose one")
    if args.demo and chosen and not chosen[0].with_demo:
        parser.error(f"--demo and --{chosen[0].flag} cannot be combined: a resumed run keeps the data it started "
                     "with")
    for flag, needed in NEEDS.items():
        if getattr(args, flag) and not getattr(args, needed):
            parser.error(f"--{flag} needs --{needed}")
    return chosen[0] if chosen else None


def _demo_config(args: argparse.Namespace, output_dir: Path) -> Config:
    """The debug preset on the synthetic phantom in OUTPUT_DIR/demo_data (written once, then reused). Another image
    size gets its own folder (``demo_data_96px``): rewriting the first would change the data of the runs made on it."""
    from ..io.run_dir import ensure_outside_runs, ensure_writable
    from ..phantom import generate_phantom

    given = _names_a_data_dir(args)
    if not args.config:
        args.config = str(PRESET_DIR / "debug.yaml")  # the preset, whatever the current directory holds
    config = resolve_config(args, preset=DEMO_SETTINGS)
    if not given:
        size = config.data.image_size
        usual = load_config(PRESET_DIR / "debug.yaml").data.image_size
        demo_data = output_dir / ("demo_data" if size == usual else f"demo_data_{size}px")
        ensure_outside_runs(output_dir)
        ensure_writable(output_dir)
        generate_phantom(demo_data, num_patients=DEMO_PATIENTS, image_size=config.data.image_size, seed=0)
        config = apply_overrides(config, {"data.data_dir": str(demo_data)})
    return config


def _names_a_data_dir(args: argparse.Namespace) -> bool:
    """Whether the command line or the user's own YAML names a data directory, the default's path included (a
    preset's ``data_dir`` is only where data usually lies, so ``--demo --config production`` still writes the
    phantom)."""
    if "data.data_dir" in flag_overrides(args):
        return True
    if not args.config:
        return False
    path = resolve_config_path(args.config)
    if path.resolve().parent == PRESET_DIR.resolve():
        return False
    section = load_yaml(path).get("data")
    return isinstance(section, dict) and "data_dir" in section


if __name__ == "__main__":
    sys.exit(main())
