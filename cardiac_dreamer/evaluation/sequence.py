"""Sequential guidance scored beside single-frame guidance on the very same frames of the evaluated sweeps.

Every numbered frame of the evaluated patients is a current frame once, with the K-1 frames before it in its sweep
(fewer at a sweep's start) and the moves since, as :mod:`cardiac_dreamer.data.chains` builds them; the single-frame
figures are the image-only estimates of the same current frames, so the ratio between the two is paired.

Beside them, the moves alone: a sweep that closes in on the view can give its pose away in its recent moves (the
sonographer moves less near the view, and toward it), and the fuser sees those moves. So a sequential gain means
something only where it also beats ``moves_only``, a ridge from the chain's moves to at1 fitted on the training
patients' chains, with no image.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from ..data.chains import build_chains, renumbered_frame
from ..data.records import TransitionRecord
from ..models.sequence import sequence_frames
from ..models.sequence_inputs import ChainSet, chain_moves, chain_set, current_poses, frame_poses, fuse_chains
from ..models.system import GuidanceModel
from .baselines import fit_ridge
from .metrics import ratio_text, summarize

RATIO_KEYS = ("translation_error_mm", "rotation_error_deg")
log = logging.getLogger(__name__)


@torch.inference_mode()
def sequence_metrics(model: GuidanceModel, records: Sequence[TransitionRecord], image_size: int,
                     device: torch.device, train: Sequence[TransitionRecord] = ()) -> Optional[Dict[str, Any]]:
    """``metrics.json["guidance_sequence"]``: the sequential estimate's metrics (the guidance keys) with ``frames``
    and ``sequence_frames``, the single frame's on the same frames, their ratios, and the moves-only baseline
    fitted on ``train`` (null without training chains); None without a trained sequential estimator or without
    numbered frames."""
    frames = sequence_frames(model)
    if not frames:
        return None
    renumbered = renumbered_frame(records)
    if renumbered:  # chained by number, two sweeps numbered alike would be scored as one: no figure beats a wrong one
        log.warning("guidance_sequence is left out: %s (two sweeps numbered alike in one folder)", renumbered)
        return None
    chains, _ = chain_set(model, records, frames, image_size, device)
    if not len(chains):
        log.warning("guidance_sequence is left out: the evaluated pairs have no frame numbers (frame_t1, frame_t2) "
                    "to chain")
        return None
    model.cpu().eval()
    sequential = fuse_chains(model, chains)
    labels = chains.targets.double().numpy()
    ours = summarize(labels, sequential.double().numpy())
    single = summarize(labels, chains.estimates[:, 0].double().numpy())
    moves_only = moves_only_predictions(train, chains, frames, model.config.composition)
    return {**ours, "frames": len(chains), "sequence_frames": frames, "single_frame": single,
            "vs_single_frame": {key: ours[key] / single[key] if single[key] else None for key in RATIO_KEYS},
            "baselines": {"moves_only": None if moves_only is None else summarize(labels, moves_only)}}


def moves_only_predictions(train: Sequence[TransitionRecord], evaluated: ChainSet, frames: int,
                           composition: str) -> Optional[np.ndarray]:
    """``[N, 6]`` at1 of each evaluated chain's current frame from its moves alone: a ridge (penalty chosen across
    the training patients) fitted on the chains of ``train``; None when ``train`` has no numbered frames."""
    chains = build_chains(train, frames)
    if not len(chains):
        return None
    poses = frame_poses(chains)
    fit = fit_ridge(_move_features(*chain_moves(chains.index, poses, composition)),
                    current_poses(chains, poses).numpy(),
                    [chains.frames[row].patient_id for row in chains.index[:, 0]])
    return fit.predict(_move_features(evaluated.moves, evaluated.present))


def _move_features(moves: torch.Tensor, present: torch.Tensor) -> np.ndarray:
    """``[N, 7 (K-1)]``: the move from each past frame to the present, and whether that frame exists."""
    past = torch.cat([moves[:, 1:], present[:, 1:, None].to(moves.dtype)], dim=-1)  # [N, K-1, 7]
    return past.flatten(1).double().numpy()


def sequence_line(metrics: Dict[str, Any]) -> str:
    """The one line an evaluation prints about sequential guidance, with the moves alone where they were fitted."""
    single, ratio = metrics["single_frame"], metrics["vs_single_frame"]
    parts = [f"{name} {metrics[key]:.3g} {unit} vs {single[key]:.3g} ({ratio_text(ratio[key])})"
             for name, key, unit in (("translation error", RATIO_KEYS[0], "mm"),
                                     ("rotation error", RATIO_KEYS[1], "deg"))]
    line = (f"sequential guidance ({metrics['sequence_frames']} frames) vs the single frame on the same "
            f"{metrics['frames']} frames: " + ", ".join(parts))
    moves_only = metrics.get("baselines", {}).get("moves_only")
    if moves_only is not None:
        line += (f"; the moves alone (no image): {moves_only[RATIO_KEYS[0]]:.3g} mm, "
                 f"{moves_only[RATIO_KEYS[1]]:.3g} deg")
    return line

