"""Baselines a guidance model is scored against on the same patients: the training mean, the move alone, and a
linear model of the pixels.

* ``train_mean``: the mean at1 of the training pairs for every pair. Guidance that does not beat it by a wide margin
  has learnt nothing from the image.
* ``move_only``: a small MLP from the t1 -> t2 move to at1, trained on the same training patients. It sees no image.
  Whatever it achieves is what the move alone says about the pose (a sonographer who moves toward the view makes
  the move predict the pose), so a model fed the real move must beat it before its composed prediction means anything.
* ``pixel_ridge``: ridge regression from each t1 image, averaged over 16x16, 8x8 and 4x4 grids of cells, to at1,
  fitted in seconds on the training patients' distinct t1 frames. A network that loses to it has not learnt more
  from the image than where the bright and dark regions lie.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from ..data.normalization import AxisStats
from ..data.pooling import GRIDS, pooled_pixels
from ..data.records import TransitionRecord
from ..data.transforms import images_to_float, read_grayscale
from ..geometry import mean_pose, unwrapped_poses
from ..runtime.threads import usable_cpus

MOVE_ONLY_HIDDEN = 64
MOVE_ONLY_STEPS = 400
MOVE_ONLY_LR = 3e-3
RIDGE_PENALTIES = np.logspace(-6, 2, 17)  # per frame: the penalty is this times the number of fitted frames
RIDGE_BLOCKS = 5  # contiguous cross-validation blocks when the training frames come from one patient


def train_mean_predictions(train: Sequence[TransitionRecord], evaluated: Sequence[TransitionRecord]) -> np.ndarray:
    """``[N, 6]``: the training pairs' mean at1 (mm, degrees; angles averaged on the circle) for each evaluated
    pair."""
    mean = mean_pose([record.at1 for record in train])
    return np.tile(mean, (len(evaluated), 1))


def move_only_predictions(train: Sequence[TransitionRecord], val: Sequence[TransitionRecord],
                          evaluated: Sequence[TransitionRecord], seed: int) -> np.ndarray:
    """``[N, 6]`` at1 predicted from each evaluated pair's move by an MLP fitted on ``train`` (full batch, Adam),
    keeping the weights with the lowest loss on ``val`` (the same selection the image models get)."""
    moves, poses = _arrays(train)
    poses = unwrapped_poses(poses)
    move_stats, pose_stats = AxisStats.fit(moves), AxisStats.fit(poses)

    def inputs(records):
        return torch.from_numpy(move_stats.normalize(_arrays(records)[0])).float()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, MOVE_ONLY_HIDDEN), nn.GELU(), nn.Linear(MOVE_ONLY_HIDDEN, MOVE_ONLY_HIDDEN),
                              nn.GELU(), nn.Linear(MOVE_ONLY_HIDDEN, 6))
        x_train, y_train = inputs(train), torch.from_numpy(pose_stats.normalize(poses)).float()
        x_val = inputs(val)
        y_val = torch.from_numpy(pose_stats.normalize(unwrapped_poses(_arrays(val)[1], around=pose_stats.mean))).float()
        optimizer = torch.optim.Adam(model.parameters(), lr=MOVE_ONLY_LR)
        best, best_state = float("inf"), None
        for _ in range(MOVE_ONLY_STEPS):
            loss = nn.functional.smooth_l1_loss(model(x_train), y_train)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                val_loss = nn.functional.smooth_l1_loss(model(x_val), y_val).item()
            if val_loss < best:
                best, best_state = val_loss, {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
        with torch.no_grad():
            predicted = model(inputs(evaluated)).double().numpy()
    return pose_stats.denormalize(predicted)


def _arrays(records: Sequence[TransitionRecord]) -> tuple[np.ndarray, np.ndarray]:
    """``(moves [N, 6], at1 [N, 6])`` in mm and degrees, float64."""
    return (np.asarray([r.action_change for r in records], dtype=np.float64).reshape(-1, 6),
            np.asarray([r.at1 for r in records], dtype=np.float64).reshape(-1, 6))


@dataclass
class RidgeFit:
    """A ridge regression on standardized features, one penalty per output axis (chosen by blocked CV)."""

    feature_mean: np.ndarray  # [F]
    feature_std: np.ndarray  # [F]
    weights: np.ndarray  # [F, 6]
    intercept: np.ndarray  # [6]
    penalties: np.ndarray  # [6] per frame, from RIDGE_PENALTIES

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (features - self.feature_mean) / self.feature_std @ self.weights + self.intercept


def fit_ridge(features: np.ndarray, targets: np.ndarray, groups: Sequence[str]) -> RidgeFit:
    """Ridge from ``features [N, F]`` to poses ``targets [N, 6]`` (their angles unwrapped, :func:`unwrapped_poses`),
    features standardized with these rows' statistics.

    Each axis's penalty minimizes the MAE of blocked cross-validation over these rows only: one block per group
    (patient) where there are two or more, else :data:`RIDGE_BLOCKS` contiguous blocks, so frames of one sweep
    never score a model fitted on their neighbours (ties go to the smaller penalty). Whatever is evaluated later
    plays no part."""
    if not len(features):
        raise ValueError("a ridge baseline needs at least one training row")
    features, targets = np.asarray(features, np.float64), unwrapped_poses(targets)  # angles as numbers
    errors = np.zeros((len(RIDGE_PENALTIES), targets.shape[1]))  # summed absolute CV errors per penalty and axis
    if len(features) == 1:
        errors[:-1] = np.inf  # one frame cannot be cross-validated: the strongest penalty, about the mean, is chosen
    for held_out in _blocks(groups) if len(features) >= 2 else []:
        kept = np.ones(len(features), bool)
        kept[held_out] = False
        predictions = _ridge_path(features[kept], targets[kept], features[held_out])  # [P, M, 6]
        errors += np.abs(predictions - targets[held_out]).sum(axis=1)
    penalties = RIDGE_PENALTIES[errors.argmin(axis=0)]
    mean, std = _standardization(features)
    standardized = (features - mean) / std
    centre = targets.mean(axis=0)
    gram = standardized.T @ standardized
    weights = np.stack([np.linalg.solve(gram + penalty * len(features) * np.eye(len(gram)),
                                        standardized.T @ (targets[:, axis] - centre[axis]))
                        for axis, penalty in enumerate(penalties)], axis=1)
    return RidgeFit(mean, std, weights, centre, penalties)


def _blocks(groups: Sequence[str]) -> List[np.ndarray]:
    """Row indices of each cross-validation block: one per group, else contiguous runs of rows."""
    groups = np.asarray(list(groups))
    names = sorted(set(groups.tolist()))
    if len(names) >= 2:
        return [np.flatnonzero(groups == name) for name in names]
    return [block for block in np.array_split(np.arange(len(groups)), min(RIDGE_BLOCKS, len(groups)))]


def _standardization(features: np.ndarray):
    mean, std = features.mean(axis=0), features.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)  # a constant feature (a black border) stays 0, not NaN


def _ridge_path(features: np.ndarray, targets: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """Predictions ``[penalties, M, 6]`` for ``evaluated`` of ridges fitted on ``features`` with every penalty of
    :data:`RIDGE_PENALTIES`, from one eigendecomposition of the Gram matrix."""
    mean, std = _standardization(features)
    standardized, scored = (features - mean) / std, (evaluated - mean) / std
    eigenvalues, vectors = np.linalg.eigh(standardized.T @ standardized)
    projected = vectors.T @ (standardized.T @ (targets - targets.mean(axis=0)))  # [F, 6]
    scored_basis = scored @ vectors  # [M, F]
    scale = 1.0 / (np.maximum(eigenvalues, 0.0)[None, :] + RIDGE_PENALTIES[:, None] * len(features))  # [P, F]
    return np.einsum("mf,pf,fa->pma", scored_basis, scale, projected) + targets.mean(axis=0)


class PixelRidge:
    """The ``pixel_ridge`` baseline on records: their t1 images read the way the dataset reads them (grayscale at
    ``image_size``, normalized as the model sees them), pooled by :func:`pooled_pixels`, regressed by
    :func:`fit_ridge` on every distinct t1 frame of the training records."""

    def __init__(self, train: Sequence[TransitionRecord], image_size: int):
        self.image_size = image_size
        frames: Dict[Path, TransitionRecord] = {}
        for record in train:
            frames.setdefault(record.image_t1, record)  # a frame's label is its first pair's at1
        chosen = list(frames.values())
        self.fit = fit_ridge(self.features([r.image_t1 for r in chosen]),
                             np.asarray([r.at1 for r in chosen], np.float64).reshape(-1, 6),
                             [r.patient_id for r in chosen])

    def predict(self, records: Sequence[TransitionRecord]) -> np.ndarray:
        """``[N, 6]`` at1 in mm and degrees for each record's t1 image."""
        paths = list(dict.fromkeys(r.image_t1 for r in records))
        rows = {path: row for row, path in enumerate(paths)}
        predicted = self.fit.predict(self.features(paths))
        return predicted[[rows[r.image_t1] for r in records]]

    def features(self, paths: Sequence[Path]) -> np.ndarray:
        """``[N, F]``: the pooled pixels of these image files, read as the ridge reads its training frames."""
        return pooled_frames(paths, self.image_size)


def pooled_frames(paths: Sequence[Path], image_size: int) -> np.ndarray:
    """``[N, F]``: the pooled pixels of image files read as the model reads them (grayscale at ``image_size``,
    normalized), in parallel."""

    def one(path: Path) -> np.ndarray:
        image = images_to_float(torch.from_numpy(read_grayscale(path, image_size)))  # [H, W]
        return pooled_pixels(image.double().numpy()[None], GRIDS)[0]

    with ThreadPoolExecutor(max_workers=min(8, usable_cpus())) as pool:  # PIL releases the GIL while decoding
        return np.stack(list(pool.map(one, paths)))


Baseline = Callable[[Sequence[TransitionRecord]], np.ndarray]  # evaluated pairs -> at1 [N, 6], mm and degrees


@dataclass(frozen=True)
class BaselineData:
    """What a baseline learns from: the training pairs whose labels the model had, the validation pairs it may
    select on (the training pairs when there are none), the model's image size and the run's seed."""

    train: Sequence[TransitionRecord]
    val: Sequence[TransitionRecord]
    image_size: int
    seed: int = 0


# Every report and --cv score each of these, fitted on the same pairs as the model: a new baseline is one entry.
BASELINES: Dict[str, Callable[[BaselineData], Baseline]] = {
    "move_only": lambda data: functools.partial(move_only_predictions, data.train, data.val or data.train,
                                                seed=data.seed),
    "pixel_ridge": lambda data: PixelRidge(data.train, data.image_size).predict,
    "train_mean": lambda data: functools.partial(train_mean_predictions, data.train),
}
SEED_FREE = ("pixel_ridge", "train_mean")  # deterministic: one fit serves every seed
