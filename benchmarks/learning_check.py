"""Does a setting help the model learn? One brief phantom training, scored on a held-out patient.

    python benchmarks/learning_check.py --set loss.lambda_consistency=0.5
    python benchmarks/learning_check.py --patients 3 --pairs 160 --set model.token_type=spatial

Trains a tiny world model (the demo's ResNet-18, channel tokens, d_model 32, 1 layer, 64 px, 8 epochs in
precision 16) as tests/test_world_model.py does (:func:`brief_training`), on ``--patients`` training patients plus
one to validate and one held out of phantom v4 (``--phantom v3``: the static phantom of before), its pairs re-drawn
up to 96 frames apart along each sweep (``data.pair_gap_frames``: a v4 export's own pairs move a fraction of a mm
or degree, too little for the world model to learn what a move does in so brief a training), and prints one JSON
line: the settings, seconds, the image-only guidance MAE over the training mean's and over the pixel ridge's per
axis (``guidance_vs_mean``, ``guidance_vs_pixel_ridge``, the ridge fitted on the same training patients), the
move-transfer slopes, and the world model's latent error over that of the target's own view of image t1 ("nothing
changes"). About 70 s on 2 CPU cores at the defaults.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.config import Config, apply_overrides, parse_override
from cardiac_dreamer.data.prepare import build_datasets, prepare_data
from cardiac_dreamer.evaluation import evaluate_checkpoint, load_run
from cardiac_dreamer.models import build_model
from cardiac_dreamer.io.run_dir import RunDirectory
from cardiac_dreamer.synthetic import generate_phantom
from cardiac_dreamer.training import Trainer


SETTINGS = {  # a tiny world model, trained briefly; tests/test_world_model.py trains it too
    "data.image_size": 64, "data.manual_splits": True,
    "model.backbone": "resnet18", "model.token_type": "channel", "model.d_model": 32, "model.num_heads": 2,
    "model.num_layers": 1, "data.pair_gap_frames": 96,
    "training.batch_size": 16, "training.max_epochs": 8, "training.lr": 2e-3, "training.scheduler": "cosine",
    "training.warmup_epochs": 1, "training.precision": "16", "training.num_workers": 0,
}


def brief_training(scratch: Path, overrides: Optional[Dict[str, Any]] = None, patients: int = 4, pairs: int = 120,
                   phantom: str = "v4"):
    """Train on a fresh ``phantom`` in ``scratch`` (``patients`` to train on, one to validate, one held out);
    the best checkpoint's run (:class:`LoadedRun`), the held-out patient's dataset, the settings and the training
    seconds."""
    names = [f"phantom_{number:02d}" for number in range(1, patients + 3)]
    settings = {**SETTINGS, "data.train_patients": names[:-2], "data.val_patients": [names[-2]],
                "data.test_patients": [names[-1]], **(overrides or {})}
    data = scratch / "phantom"
    generate_phantom(data, num_patients=len(names), pairs_per_patient=pairs, image_size=64, seed=0, version=phantom)
    config = apply_overrides(Config(), {**settings, "data.data_dir": str(data)})
    prepared = prepare_data(config.data, composition=config.model.composition)
    datasets = build_datasets(prepared, config.data, normalize_images=False)
    torch.manual_seed(0)
    model = build_model(config, prepared.stats)
    started = time.perf_counter()
    metadata = {"split": prepared.split.to_dict(), "data_dir": str(data), "grouping": prepared.grouping}  # to evaluate
    trainer = Trainer(config, RunDirectory.create(scratch / "runs"), metadata=metadata, progress=False)
    best = load_run(trainer.fit(model, datasets["train"], datasets["val"]).best_checkpoint)
    seconds = time.perf_counter() - started
    return best, datasets["test"], settings, seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=4, help="training patients (default: 4)")
    parser.add_argument("--pairs", type=int, default=120, help="pairs per patient (default: 120)")
    parser.add_argument("--phantom", choices=("v4", "v3"), default="v4", help="phantom version (default: v4)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = {key: parse_override(key, value) for key, _, value in (item.partition("=") for item in args.set)}
    with tempfile.TemporaryDirectory() as scratch:
        run, _, settings, seconds = brief_training(Path(scratch), overrides, args.patients, args.pairs, args.phantom)
        # as cardiac-evaluate scores it: the baselines fitted on the same training patients, the latent references
        metrics = evaluate_checkpoint(run.path, "test", device="cpu", progress=False)[0].metrics
    latent = metrics["world_model"]["latent_error"] if metrics["world_model"] else None
    print(json.dumps({"settings": {key: settings[key] for key in sorted(settings)}, "seconds": round(seconds),
                      "guidance_vs_mean": metrics["guidance_vs_mean"],
                      "guidance_vs_pixel_ridge": metrics["guidance_vs_pixel_ridge"],
                      "move_transfer_slope": metrics["move_transfer_slope"],
                      "latent_dreamed_vs_target_t1": latent and latent["dreamed_vs_target_t1"]}))


if __name__ == "__main__":
    sys.exit(run_script(main))
