"""Does a setting help the model learn? One brief phantom training, scored on a held-out patient.

    python benchmarks/learning_check.py --set loss.lambda_consistency=0.5
    python benchmarks/learning_check.py --patients 3 --pairs 160 --set model.token_type=spatial

Trains the tiny default-shaped world model (d_model 32, 1 layer, 64 px, 8 epochs in precision 16) as
tests/test_world_model.py does, on ``--patients`` training patients plus one to validate and one held out, and
prints one JSON line: the settings, seconds, the image-only guidance MAE over the training mean's per axis
(``guidance_vs_mean``) and the move-transfer slopes. About 95 s on 2 CPU cores at the defaults.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from cardiac_dreamer.checkpoint import load_checkpoint
from cardiac_dreamer.config import Config, apply_overrides
from cardiac_dreamer.data.prepare import build_datasets, prepare_data
from cardiac_dreamer.evaluation import evaluate
from cardiac_dreamer.models import CardiacDreamer
from cardiac_dreamer.run_dir import RunDirectory
from cardiac_dreamer.synthetic import generate_phantom
from cardiac_dreamer.training import Trainer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=6, help="training patients (default: 6)")
    parser.add_argument("--pairs", type=int, default=80, help="pairs per patient (default: 80)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    names = [f"phantom_{number:02d}" for number in range(1, args.patients + 3)]
    settings = {
        "data.image_size": 64, "data.manual_splits": True, "data.train_patients": names[:-2],
        "data.val_patients": [names[-2]], "data.test_patients": [names[-1]],
        "model.d_model": 32, "model.num_heads": 2, "model.num_layers": 1,
        "training.batch_size": 16, "training.max_epochs": 8, "training.lr": 2e-3, "training.scheduler": "cosine",
        "training.warmup_epochs": 1, "training.precision": "16", "training.num_workers": 0,
        **{key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)},
    }
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "phantom"
        generate_phantom(data, num_patients=len(names), pairs_per_patient=args.pairs, image_size=64, seed=0)
        config = apply_overrides(Config(), {**settings, "data.data_dir": str(data)})
        prepared = prepare_data(config.data)
        datasets = build_datasets(prepared, config.data, normalize_images=False)
        torch.manual_seed(config.training.seed)
        model = CardiacDreamer(config.model, image_size=config.data.image_size)
        model.set_normalization(prepared.stats)
        started = time.perf_counter()
        trainer = Trainer(config, RunDirectory.create(Path(scratch) / "runs"), progress=False)
        best = load_checkpoint(trainer.fit(model, datasets["train"], datasets["val"]).best_checkpoint)
        seconds = time.perf_counter() - started
        metrics = evaluate(CardiacDreamer.from_checkpoint(best), datasets["test"], "cpu", progress=False).metrics
    print(json.dumps({"settings": {key: settings[key] for key in sorted(settings)}, "seconds": round(seconds),
                      "guidance_vs_mean": metrics["guidance_vs_mean"],
                      "move_transfer_slope": metrics["move_transfer_slope"]}))


if __name__ == "__main__":
    main()
