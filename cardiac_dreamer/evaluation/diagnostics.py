"""Does the world model use the move it is given, and does it predict what the probe will see?

For a move ``m`` along one axis, ``(at2(m) - at2(0)) / m``: how much of the move the imagined pose moves by. A world
model that understands moves has slopes near 1 on every axis (the pose after a move is the pose plus the move, under
additive labels); a slope near 0 means the move never reaches the guidance head, and the composed prediction then
carries the whole move as error.

:class:`WorldModelErrors` measures the world model's latent prediction (made as ``loss.latent_prediction`` says)
against the EMA target encoder's view of image t2 in the latent loss's units, beside two references that need no
world model: the t1 features left unchanged (``copy``) and the target's own view of image t1, the fair "nothing
changes": a dreamer worse than that one predicts less than no change. Its at2 is likewise scored beside the
image-only at1 plus the move, which arithmetic gives for free.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from ..geometry import AXIS_NAMES, apply_move
from ..losses import latent_loss, latent_prediction
from ..models.registry import can_imagine
from .metrics import axis_key, pose_errors

LATENT_REFERENCES = ("dreamed", "dreamed_without_move", "copy", "target_t1")
MOVE_QUARTILES = 4

SLOPE_MOVE_STDS = 2.0  # probe moves of this many training move stds: large enough to read, typical of the data


@torch.no_grad()
def move_transfer_slopes(model: torch.nn.Module, images: torch.Tensor, seed: int = 0) -> List[float]:
    """Least-squares slope of the imagined at2 change against the move, axis by axis, over ``images``
    ``[N, 1, H, W]`` (normalized floats on the model's device), each with a random move along that axis of
    :data:`SLOPE_MOVE_STDS` training stds. The model is put in eval mode; its previous mode is restored."""
    if not can_imagine(model):
        raise ValueError("move-transfer slopes need a world model (the 'dreamer' variant)")
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    count = len(images)
    features = model.backbone(images)  # once: only the move differs between the seven passes below
    zero = torch.zeros(count, len(AXIS_NAMES), device=images.device)
    base = model.imagine(features, zero)["at2"]
    slopes = []
    for axis in range(len(AXIS_NAMES)):
        size = torch.randn(count, generator=generator).to(images.device) * model.move_std[axis] * SLOPE_MOVE_STDS
        move = zero.clone()
        move[:, axis] = size
        change = model.imagine(features, move)["at2"][:, axis] - base[:, axis]
        slopes.append(float((change * size).sum() / size.square().sum()))
    model.train(was_training)
    return slopes


def latent_distances(predicted: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """``[B]``: the latent loss of each sample alone (their mean is the batch's latent loss)."""
    return torch.stack([latent_loss(predicted[i:i + 1], target[i:i + 1], beta) for i in range(len(predicted))])


class WorldModelErrors:
    """Accumulates, batch by batch, the world-model diagnostics of ``metrics.json["world_model"]``.

    ``target_encoder`` maps images ``[B, 1, H, W]`` to the latent target's features; without one (a checkpoint
    saved before it was stored, or trained without the latent loss) the latent errors are replaced by a note and
    only the at2 errors are measured."""

    def __init__(self, target_encoder: Optional[Callable[[torch.Tensor], torch.Tensor]], beta: float,
                 composition: str, note: Optional[str] = None, prediction: str = "change"):
        self.target_encoder, self.beta, self.composition, self.note = target_encoder, beta, composition, note
        self.prediction = prediction  # loss.latent_prediction, as the model was trained
        self.latent: Dict[str, List[torch.Tensor]] = {name: [] for name in LATENT_REFERENCES}
        self.moves: List[torch.Tensor] = []  # [B, 6] mm and degrees
        self.move_sizes: List[torch.Tensor] = []  # [B] in training move stds
        self.at2: Dict[str, List[np.ndarray]] = {"dreamed": [], "at1_plus_move": []}
        self.labels: List[np.ndarray] = []

    @torch.no_grad()
    def add(self, model: torch.nn.Module, batch: Dict[str, torch.Tensor], outputs: Dict[str, torch.Tensor]) -> None:
        """One evaluated batch: ``outputs`` are the model's on ``batch`` (with the real move)."""
        move = batch["action_change"].float()
        self.labels.append(batch["at2"].double().cpu().numpy())
        self.at2["dreamed"].append(outputs["at2"].double().cpu().numpy())
        self.at2["at1_plus_move"].append(
            apply_move(outputs["at1"].float(), move, self.composition).double().cpu().numpy())
        self.moves.append(move.double().cpu())
        self.move_sizes.append((move / model.move_std).norm(dim=-1).double().cpu())
        if self.target_encoder is None:
            return
        target_t2, target_t1 = self.target_encoder(batch["image_t2"]), self.target_encoder(batch["image_t1"])
        features_t1 = model.backbone(batch["image_t1"])
        start = target_t1 if self.prediction == "change" else None
        dreamed = latent_prediction(outputs, start)
        still = latent_prediction(model.imagine(features_t1, torch.zeros_like(move)), start)
        for name, features in (("dreamed", dreamed), ("dreamed_without_move", still), ("copy", features_t1),
                               ("target_t1", target_t1)):
            self.latent[name].append(latent_distances(features, target_t2, self.beta).double().cpu())

    def result(self) -> Dict[str, Any]:
        labels = np.concatenate(self.labels)
        at2 = {name: _mae(labels, np.concatenate(values)) for name, values in self.at2.items()}
        if self.target_encoder is None:
            return {"latent_error": None, "at2_error": at2, "note": self.note, "latent_prediction": self.prediction}
        latent = {name: torch.cat(values).numpy() for name, values in self.latent.items()}
        sizes, moves = torch.cat(self.move_sizes).numpy(), torch.cat(self.moves).numpy()
        quartiles = []
        for rows in np.array_split(np.argsort(sizes, kind="stable"), MOVE_QUARTILES):
            if len(rows):
                quartiles.append({
                    "samples": int(len(rows)),
                    "move_size_stds": _range(sizes[rows]),
                    "translation_mm": _range(np.linalg.norm(moves[rows, :3], axis=1)),
                    "rotation_deg": _range(np.linalg.norm(moves[rows, 3:], axis=1)),
                    **_latent_means(latent, rows),
                })
        overall = _latent_means(latent, np.arange(len(sizes)))
        return {"latent_error": {**overall, "by_move_quartile": quartiles}, "at2_error": at2,
                "latent_prediction": self.prediction}


def _latent_means(latent: Dict[str, np.ndarray], rows: np.ndarray) -> Dict[str, Optional[float]]:
    means = {name: float(values[rows].mean()) for name, values in latent.items()}
    for reference in ("copy", "target_t1"):
        means[f"dreamed_vs_{reference}"] = means["dreamed"] / means[reference] if means[reference] > 0 else None
    return means


def _range(values: np.ndarray) -> List[float]:
    return [float(values.min()), float(values.max())]


def _mae(labels: np.ndarray, predictions: np.ndarray) -> Dict[str, float]:
    errors = np.abs(pose_errors(labels, predictions)).mean(axis=0)
    return {axis_key("mae", axis): float(value) for axis, value in enumerate(errors)}
