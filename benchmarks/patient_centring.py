"""Is a held-out patient's shared error an offset of that patient's images, and can a session's past frames see it?

    python benchmarks/patient_centring.py RUN/checkpoints/averaged.ckpt DATA_DIR

Every patient's image features are centred on that patient's own mean before the estimate is read: the pixel ridge's
pooled pixels (the ridge refitted on the training patients' centred frames) and the network's feature map (the
training frames' mean added back, so its head reads it as trained). Centred on the whole sweep, a patient's anatomy
offset cancels, but the sweep's mean pose is taken for the training patients' (every sweep runs the same protocol),
and the whole sweep is not known while guiding; centred on the frames so far, it is what a session could do.
Prints, for the test and validation patients, each variant's MAE per axis over the ridge's and its translation and
rotation errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import sys
import torch

from cardiac_dreamer.cli.common import run_script
from cardiac_dreamer.data.records import TransitionRecord, read_records
from cardiac_dreamer.data.transforms import images_to_float, read_grayscale
from cardiac_dreamer.evaluation.baselines import PixelRidge, fit_ridge
from cardiac_dreamer.evaluation.loading import load_run
from cardiac_dreamer.evaluation.metrics import rotation_errors, translation_errors


def sweep_frames(records: Sequence[TransitionRecord]) -> List[TransitionRecord]:
    """Each distinct t1 frame once (its first pair), in frame order."""
    frames: Dict[Path, TransitionRecord] = {}
    for record in sorted(records, key=lambda record: record.frame_t1 or 0):
        frames.setdefault(record.image_t1, record)
    return list(frames.values())


def centred_on_sweep(values):
    return values - values.mean(0)


def centred_so_far(values):
    """Each row minus the mean of the rows up to it (numpy or torch, rows in sweep order)."""
    counts = np.arange(1, len(values) + 1, dtype=np.float64).reshape(-1, *([1] * (values.ndim - 1)))
    if isinstance(values, torch.Tensor):
        return values - values.cumsum(0) / torch.from_numpy(counts).to(values.dtype)
    return values - values.cumsum(0) / counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args()
    run = load_run(args.checkpoint)
    model, size = run.model.eval(), run.model.image_size
    by_patient: Dict[str, List[TransitionRecord]] = {}
    for record in read_records(args.data_dir):
        by_patient.setdefault(record.patient_id, []).append(record)
    training = [sweep_frames(by_patient[patient]) for patient in run.split.train]
    ridge = PixelRidge([record for sweep in training for record in sweep], size)

    def pixels(frames):
        return ridge.features([record.image_t1 for record in frames])

    def feature_maps(frames):
        images = torch.stack([torch.from_numpy(read_grayscale(record.image_t1, size)) for record in frames])[:, None]
        with torch.no_grad():
            return torch.cat([model.backbone(images_to_float(images[start:start + 64]))
                              for start in range(0, len(images), 64)])

    def head(maps):
        with torch.no_grad():
            return model.estimate(maps).double().numpy()

    poses = np.concatenate([[record.at1 for record in sweep] for sweep in training])
    groups = [record.patient_id for sweep in training for record in sweep]
    training_pixels = [pixels(sweep) for sweep in training]
    ridges = {centre: fit_ridge(np.concatenate([centre(values) for values in training_pixels]), poses, groups)
              for centre in (centred_on_sweep, centred_so_far)}
    training_mean_map = torch.cat([feature_maps(sweep) for sweep in training]).mean(0)
    np.set_printoptions(precision=2, suppress=True)
    for patient in run.split.test + run.split.val:
        frames = sweep_frames(by_patient[patient])
        labels, values, maps = np.array([record.at1 for record in frames]), pixels(frames), feature_maps(frames)
        rows = {
            "pixel ridge": ridge.fit.predict(values),
            "pixel ridge, centred on the sweep": ridges[centred_on_sweep].predict(centred_on_sweep(values)),
            "pixel ridge, centred on the frames so far": ridges[centred_so_far].predict(centred_so_far(values)),
            "network": head(maps),
            "network, centred on the sweep": head(centred_on_sweep(maps) + training_mean_map),
            "network, centred on the frames so far": head(centred_so_far(maps) + training_mean_map),
        }
        ridge_mae = np.abs(rows["pixel ridge"] - labels).mean(0)
        print(f"{patient} ({'test' if patient in run.split.test else 'val'}, {len(frames)} frames): MAE / the "
              "pixel ridge's per axis (x, y, z, roll, pitch, yaw), translation and rotation error")
        for name, predicted in rows.items():
            print(f"  {name:42s} {np.abs(predicted - labels).mean(0) / ridge_mae}  "
                  f"{translation_errors(labels, predicted).mean():.2f} mm  "
                  f"{rotation_errors(labels, predicted).mean():.2f} deg")


if __name__ == "__main__":
    sys.exit(run_script(main))
