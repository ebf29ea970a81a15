"""How the phantom compares with a real export: its statistics beside the real figures, and two image checks.

Why: every figure the project reports on synthetic data comes from the phantom, so what the phantom gets wrong,
those figures get wrong. The real figures (``REAL``) were measured on one real export (580 pairs of one patient).
The image checks are linear probes on pooled pixels: every axis must be readable on a patient left out
(:func:`probe_r2`), and an unseen patient must be harder than unseen frames of seen patients (:func:`patient_gap`),
as it is with people.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
from PIL import Image

from ..data.pooling import GRIDS, pooled_pixels
from ..geometry import AXIS_NAMES
from ..names import TRANSITIONS_FILE

# the real export: at1 mean, std, min, max per axis (mm, degrees); move std per axis; shares of the t1 -> t2 gaps;
# roll and yaw (mean, std) over the first and the last third of the sweep; black pixels outside the fan
REAL = {
    "at1_mean": [-0.6, -0.6, 0.7, 16.0, -4.0, -11.5],
    "at1_std": [4.1, 5.5, 3.0, 18.0, 6.4, 15.5],
    "at1_min": [-10.5, -19.0, -11.0, -2.0, -19.0, -52.0],
    "at1_max": [11.7, 10.9, 9.9, 65.0, 8.9, 4.9],
    "move_std": [0.57, 0.72, 0.30, 0.52, 0.33, 0.44],
    "gap_shares": {1: 0.37, 2: 0.45, 3: 0.16, 4: 0.02},
    "first_third": {"roll": (37.0, 14.0), "yaw": (-29.0, 14.0)},
    "last_third": {"roll": (-1.0, 0.5), "yaw": (1.9, 1.2)},
    "black_share": 0.27,
}
PROBE_SIZE_PX = 64  # images are read at this size...
PROBE_GRIDS = GRIDS  # ...and pooled in cells of 4, 8 and 16 px, as the pixel ridge baseline pools
RIDGE = 1e-2  # penalty per training sample, on standardized features
BLOCK_PAIRS = 20  # unseen frames of a seen patient: blocks of this many consecutive pairs, every fifth held out


def probe_features(images: np.ndarray) -> np.ndarray:
    """``[n, 64, 64]`` uint8 -> ``[n, F]`` float64: the pooled pixels both checks read."""
    return pooled_pixels(images.astype(np.float64) / 255.0, PROBE_GRIDS)


def ridge_predictions(features: np.ndarray, poses: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """``[n, 6]``: each sample predicted by a ridge fitted on the samples of the other folds."""
    predicted = np.empty_like(poses)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        mean, std = features[train].mean(0), features[train].std(0) + 1e-6
        inputs = (features[train] - mean) / std  # [n, F]
        penalty = RIDGE * len(inputs) * np.eye(inputs.shape[1])
        pose_mean = poses[train].mean(0)
        weights = np.linalg.solve(inputs.T @ inputs + penalty, inputs.T @ (poses[train] - pose_mean))  # [F, 6]
        predicted[test] = (features[test] - mean) / std @ weights + pose_mean
    return predicted


def probe_r2(features: np.ndarray, poses: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """``[6]`` R2 per axis of a ridge probe from pooled pixels to the pose, each fold scored by the probe fitted on
    the others: leave-one-patient-out when ``folds`` are the patients."""
    predicted = ridge_predictions(features, poses, folds)
    residual = ((predicted - poses) ** 2).sum(0)
    return 1.0 - residual / ((poses - poses.mean(0)) ** 2).sum(0)


def patient_gap(features: np.ndarray, poses: np.ndarray, patients: np.ndarray, frame_folds: np.ndarray) -> float:
    """How many times larger the ridge's error is on an unseen patient than on unseen frames of seen patients.

    The error is the RMSE per axis over the axis's std, averaged over the axes; ``frame_folds`` splits each
    patient's frames into folds (every patient in every fold).
    """
    scale = poses.std(0)

    def error(folds):
        return float((np.sqrt(((ridge_predictions(features, poses, folds) - poses) ** 2).mean(0)) / scale).mean())

    return error(patients) / error(frame_folds)


def gap_ceiling(seen_r2: np.ndarray, min_r2: float = 0.3) -> float:
    """The largest :func:`patient_gap` any unseen patient could give while every axis still reads at ``min_r2``.

    Why: both checks score the same ridge, and its error per axis over the axis's std is ``sqrt(1 - R2)``, so the
    gap is the mean of ``sqrt(1 - R2)`` on unseen patients over the same on seen ones (``seen_r2``, the R2 with
    blocks of frames held out). An unseen patient that passes the probe errs at most ``sqrt(1 - min_r2)`` per axis;
    below a ceiling of 1.5 no change to how patients differ can pass both checks until the frames of a seen
    patient show the axes more clearly.
    """
    return float(np.sqrt(1.0 - min_r2) / np.sqrt(1.0 - np.minimum(seen_r2, 1.0)).mean())


def export_statistics(folders: Sequence[Path]) -> Dict[str, object]:
    """The figures of ``REAL`` measured on the written (or real) patient folders, pooled over patients."""
    at1, moves, gaps, thirds = [], [], [], {"first_third": [], "last_third": []}
    for folder in folders:
        entries = json.loads((Path(folder) / TRANSITIONS_FILE).read_text())
        poses = np.array([entry["at1_6dof"] for entry in entries])  # [P, 6]
        at1.append(poses)
        moves.append(np.array([entry["action_change_6dof"] for entry in entries]))
        gaps += [entry["frame_t2"] - entry["frame_t1"] for entry in entries]
        third = len(poses) // 3
        thirds["first_third"].append(poses[:third])
        thirds["last_third"].append(poses[len(poses) - third:])
    at1, moves, gaps = np.concatenate(at1), np.concatenate(moves), np.array(gaps)
    statistics = {
        "at1_mean": at1.mean(0).tolist(), "at1_std": at1.std(0).tolist(),
        "at1_min": at1.min(0).tolist(), "at1_max": at1.max(0).tolist(), "move_std": moves.std(0).tolist(),
        "gap_shares": {gap: float((gaps == gap).mean()) for gap in REAL["gap_shares"]},
        "black_share": black_share(folders),
    }
    for name, parts in thirds.items():
        poses = np.concatenate(parts)  # empty where every patient holds fewer than 3 pairs: no thirds to compare
        statistics[name] = {axis: (float(poses[:, index].mean()), float(poses[:, index].std()))
                            for axis, index in (("roll", 3), ("yaw", 5))} if len(poses) else None
    return statistics


def black_share(folders: Sequence[Path], images_per_folder: int = 10) -> float:
    """Share of pixels that are exactly black in the first ft1 images of each folder."""
    shares = [(_gray(path) == 0).mean() for folder in folders
              for path in sorted((Path(folder) / "ft1").glob("*.png"))[:images_per_folder]]
    return float(np.mean(shares))


def export_features(folders: Sequence[Path]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pooled pixels of every pair's t1 image, its at1, its patient (folder number) and its block of pairs."""
    features, poses, patients, blocks = [], [], [], []
    for number, folder in enumerate(folders):
        entries = json.loads((Path(folder) / TRANSITIONS_FILE).read_text())
        images = np.stack([_gray(Path(folder) / entry["ft1_image_path"].replace("\\", "/"), PROBE_SIZE_PX)
                           for entry in entries])
        features.append(probe_features(images))
        poses.append(np.array([entry["at1_6dof"] for entry in entries]))
        patients += [number] * len(entries)
        blocks.append((np.arange(len(entries)) // BLOCK_PAIRS) % 5)
    return np.concatenate(features), np.concatenate(poses), np.array(patients), np.concatenate(blocks)


def comparison_table(folders: Sequence[Path]) -> str:
    """Markdown: each statistic of the phantom beside the real export's, then the two image checks."""
    measured = export_statistics(folders)
    rows = ["| property | real export | phantom |", "|---|---|---|"]

    def axes(values, digits=1):
        return ", ".join(f"{name} {value:.{digits}f}" for name, value in zip(AXIS_NAMES, values))

    for key, label in (("at1_mean", "at1 mean"), ("at1_std", "at1 std"), ("at1_min", "at1 min"),
                       ("at1_max", "at1 max")):
        rows.append(f"| {label} (mm, deg) | {axes(REAL[key])} | {axes(measured[key])} |")
    rows.append(f"| move std (mm, deg) | {axes(REAL['move_std'], 2)} | {axes(measured['move_std'], 2)} |")
    shares = ", ".join(f"{gap}: {share:.0%}" for gap, share in REAL["gap_shares"].items())
    measured_shares = ", ".join(f"{gap}: {share:.0%}" for gap, share in measured["gap_shares"].items())
    rows.append(f"| t2 - t1 (frames) | {shares} | {measured_shares} |")
    for key, label in (("first_third", "first third of the sweep"), ("last_third", "last third of the sweep")):
        real = ", ".join(f"{axis} {mean:.1f} +- {std:.1f}" for axis, (mean, std) in REAL[key].items())
        phantom = "n/a (needs 3 or more pairs per patient)" if measured[key] is None else \
            ", ".join(f"{axis} {mean:.1f} +- {std:.1f}" for axis, (mean, std) in measured[key].items())
        rows.append(f"| {label} (deg) | {real} | {phantom} |")
    rows.append(f"| black pixels outside the fan | {REAL['black_share']:.0%} | {measured['black_share']:.0%} |")
    features, poses, patients, blocks = export_features(folders)
    if len(folders) >= 2:
        rows.append(f"| leave-one-patient-out probe R2 (>= 0.3) | - | {axes(probe_r2(features, poses, patients), 2)} |")
    if len(folders) >= 2 and len(np.unique(blocks)) >= 2:
        gap = patient_gap(features, poses, patients, blocks)
        rows.append(f"| unseen patient / unseen frames, ridge error (>= 1.5) | - | {gap:.2f} |")
        ceiling = gap_ceiling(probe_r2(features, poses, blocks))
        rows.append(f"| the largest gap with every axis at R2 0.3 on an unseen patient | - | {ceiling:.2f} |")
    elif len(folders) >= 2:  # unseen frames are held out in blocks of BLOCK_PAIRS pairs of each patient
        rows.append(f"| unseen patient / unseen frames, ridge error (>= 1.5) | - | n/a (needs more than {BLOCK_PAIRS} "
                    "pairs per patient) |")
    return "\n".join(rows)


def _gray(path: Path, size: int = 0) -> np.ndarray:
    """The first channel of an image file, resized (area average) to ``size`` px when given."""
    with Image.open(path) as image:
        gray = image.convert("RGB").getchannel(0)
        if size:
            gray = gray.resize((size, size), Image.BOX)
        return np.asarray(gray)
