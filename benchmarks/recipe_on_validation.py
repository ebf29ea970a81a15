"""Choose the demo's recipe on validation patients only, then read the test patients for the record.

The demo's recipe (backbone, learning rate, deploying the averaged top-k weights) was first chosen looking at the demo's
test patient. This study makes the same choices where a user would: each candidate trains exactly as the demo does
(``cardiac-train --demo``, training patients phantom_02-05, validation patient phantom_01) on the demo's own phantom
(seed 0, 6 patients, test patient phantom_06) and on fresh 10-patient phantoms (other seeds, test patients
phantom_06-10); the best and the averaged checkpoint of each run are scored on the validation patient, and the
candidate with the lowest mean ratio to the pixel ridge over the phantoms' validation patients (and the training
seeds, where there are several) is chosen. Only then are the test patients read, for every candidate, so a reader can
see what the choice was worth.

    python benchmarks/recipe_on_validation.py OUT    # 4 candidates x 3 phantoms: 80 minutes on 2 cores
    python benchmarks/recipe_on_validation.py OUT --candidates resnet18@5e-4,resnet34@5e-4 --training_seeds 42,43,44
    python benchmarks/recipe_on_validation.py OUT --phantoms 1 --candidates resnet18@5e-4 -- --max_epochs 1

Finished runs (``OUT/runs/NAME_phantomP_seedT/done``) are kept, so an interrupted or widened study goes on where it
stopped; the tables are printed from whatever has finished. Arguments after ``--`` go to every ``cardiac-train``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from cardiac_dreamer.io.run_dir import latest_run
from cardiac_dreamer.names import TEST_EVALUATION
from cardiac_dreamer.synthetic import generate_phantom

TRAIN = "phantom_02,phantom_03,phantom_04,phantom_05"
VALIDATION = "phantom_01"
CHECKPOINTS = ("best", "averaged")
DEFAULT_CANDIDATES = "resnet18@5e-4,resnet34@5e-4,resnet18@2e-3,resnet34@2e-3"
DEMO_SEED = 42


def phantom(out: Path, phantom_seed: int) -> Path:
    """Seed 0 is the demo's own phantom (6 patients); other seeds are fresh ones of 10, with five test patients."""
    path = out / f"phantom_seed{phantom_seed}"
    if not (path / "phantom.json").exists():
        generate_phantom(path, num_patients=6 if phantom_seed == 0 else 10, image_size=64, seed=phantom_seed)
    return path


def test_patients(phantom_seed: int) -> str:
    return "phantom_06" if phantom_seed == 0 else ",".join(f"phantom_{index:02d}" for index in range(6, 11))


def run_name(name: str, phantom_seed: int, training_seed: int) -> str:
    return f"{name}_phantom{phantom_seed}_seed{training_seed}"


def run_candidate(run: Path, data: Path, phantom_seed: int, training_seed: int, backbone: str, lr: str,
                  extra: Sequence[str]) -> None:
    """Train as the demo does, then score the best and the averaged checkpoint on the validation patient and the best
    one on the test patients (training already scored the averaged one there)."""
    shutil.rmtree(run, ignore_errors=True)  # an interrupted run starts again
    run.parent.mkdir(parents=True, exist_ok=True)
    log_path = run.parent / f"{run.name}.log"
    with open(log_path, "w") as log:
        def step(*command: str) -> None:
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                sys.exit(f"{command[0]} failed for {run.name}: see {log_path}")

        step("cardiac-train", "--demo", "--data_dir", str(data), "--output_dir", str(run), "--lr", lr,
             "--set", f"model.backbone={backbone}", "--train_patients", TRAIN, "--val_patients", VALIDATION,
             "--test_patients", test_patients(phantom_seed), "--seed", str(training_seed), "--no_progress", *extra)
        checkpoints = latest_run(run) / "checkpoints"
        for name in CHECKPOINTS:
            step("cardiac-evaluate", "--checkpoint", str(checkpoints / f"{name}.ckpt"), "--split", "val",
                 "--output_dir", str(run / f"val_{name}"))
        step("cardiac-evaluate", "--checkpoint", str(checkpoints / "best.ckpt"), "--output_dir", str(run / "test_best"))
    (run / "done").touch()


def scores(metrics_file: Optional[Path]) -> Optional[Dict[str, float]]:
    """The deployed (image-only) guidance on one split: mm, degrees and the ratio to the pixel ridge; None when the
    file or the ridge is missing (a ridge needs training pairs to fit)."""
    if metrics_file is None or not metrics_file.is_file():
        return None
    metrics = json.loads(metrics_file.read_text())
    guidance, ridge = metrics["guidance"], metrics["baselines"].get("pixel_ridge")
    ratio = metrics.get("guidance_vs_pixel_ridge")
    if not ridge or not ratio or ratio.get("mean") is None:
        return None
    return {"mm": guidance["translation_error_mm"], "deg": guidance["rotation_error_deg"],
            "ridge_mm": ridge["translation_error_mm"], "ridge_deg": ridge["rotation_error_deg"],
            "ratio": ratio["mean"], "worst": ratio["worst"], "worst_axis": ratio["worst_axis"]}


def metrics_file(run: Path, split: str, checkpoint: str) -> Optional[Path]:
    """Where :func:`run_candidate` left a checkpoint's evaluation on ``split``."""
    if split == "val":
        return run / f"val_{checkpoint}" / "metrics.json"
    if checkpoint == "best":
        return run / "test_best" / "metrics.json"
    trained = latest_run(run) if run.is_dir() else None
    return None if trained is None else trained / TEST_EVALUATION / "metrics.json"


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def cell(runs: List[Dict[str, float]]) -> str:
    """One phantom's figures: a single run's as they are, several training seeds' averaged with their ratios' range."""
    ratios = [s["ratio"] for s in runs]
    figures = f"{mean([s['mm'] for s in runs]):.2f} mm / {mean([s['deg'] for s in runs]):.2f} deg, {mean(ratios):.2f}x"
    if len(runs) > 1:
        return f"{figures} ({min(ratios):.2f}-{max(ratios):.2f}x)"
    return f"{figures} (worst {runs[0]['worst_axis'].split('_')[1]} {runs[0]['worst']:.2f}x)"


def table(out: Path, names: List[str], phantom_seeds: Sequence[int], training_seeds: Sequence[int]) -> None:
    """One row per candidate and checkpoint: each phantom's figures and the mean ratio to the ridge over the phantoms
    and training seeds (with several seeds, also each seed's mean over the phantoms). The choice is the lowest mean
    on the validation patients, among the candidates finished on every phantom with every training seed."""
    def runs(split: str, name: str, checkpoint: str) -> List[List[Optional[Dict[str, float]]]]:
        return [[scores(metrics_file(out / "runs" / run_name(name, phantom, training), split, checkpoint))
                 for training in training_seeds] for phantom in phantom_seeds]

    found = {(split, name, checkpoint): runs(split, name, checkpoint)
             for split in ("val", "test") for name in names for checkpoint in CHECKPOINTS}
    by_seed = {key: [mean([phantom[index]["ratio"] for phantom in grid]) for index in range(len(training_seeds))]
               for key, grid in found.items() if all(all(phantom) for phantom in grid)}
    validation = {key[1:]: mean(ratios) for key, ratios in by_seed.items() if key[0] == "val"}
    choice = min(validation, key=validation.get) if validation else None
    several = len(training_seeds) > 1
    for split, title in (("val", "Validation patient phantom_01, the choice"), ("test", "Test patients, the record")):
        columns = [f"phantom seed {phantom}" for phantom in phantom_seeds] + ["mean ratio to the ridge"]
        if several:
            columns.append("by training seed " + " / ".join(map(str, training_seeds)))
        print(f"\n{title}:\n\n| candidate | checkpoint | " + " | ".join(columns) + " |\n|---|---|"
              + "---|" * len(columns))
        for name in names:
            for checkpoint in CHECKPOINTS:
                ratios = by_seed.get((split, name, checkpoint))
                cells = [cell(phantom) if all(phantom) else "-" for phantom in found[split, name, checkpoint]]
                cells.append("-" if ratios is None else f"{mean(ratios):.3f}x")
                if several:
                    cells.append("-" if ratios is None else " / ".join(f"{ratio:.3f}x" for ratio in ratios))
                marked = f"**{name}** (chosen)" if (name, checkpoint) == choice else name
                print(f"| {marked} | {checkpoint} | " + " | ".join(cells) + " |")
    ridge = [next(filter(None, phantom), None) for phantom in found["test", names[0], "best"]]  # seed-free
    print("\npixel ridge on the test patients: " + ", ".join(
        f"phantom seed {phantom} {s['ridge_mm']:.2f} mm / {s['ridge_deg']:.2f} deg"
        for phantom, s in zip(phantom_seeds, ridge) if s))


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--phantoms", default="0,1,2", help="phantom seeds (0: the demo's own phantom)")
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES, help="backbone@lr, comma-separated")
    parser.add_argument("--training_seeds", default=str(DEMO_SEED),
                        help=f"cardiac-train's --seed, comma-separated (default {DEMO_SEED}, the demo's)")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if any(argument == "--seed" or argument.startswith("--seed=") for argument in extra):
        parser.error("give the training seeds with --training_seeds, not after --: the runs are named by them")
    phantom_seeds = [int(seed) for seed in args.phantoms.split(",")]
    training_seeds = [int(seed) for seed in args.training_seeds.split(",")]
    candidates = [candidate.split("@") for candidate in args.candidates.split(",")]
    names = [f"{backbone}_lr{lr}" for backbone, lr in candidates]
    for training_seed in training_seeds:
        for phantom_seed in phantom_seeds:
            data = phantom(args.out, phantom_seed)
            for name, (backbone, lr) in zip(names, candidates):
                run = args.out / "runs" / run_name(name, phantom_seed, training_seed)
                if not (run / "done").exists():
                    print(f"training {run.name}", flush=True)
                    run_candidate(run, data, phantom_seed, training_seed, backbone, lr, extra)
    table(args.out, names, phantom_seeds, training_seeds)


if __name__ == "__main__":
    main()
