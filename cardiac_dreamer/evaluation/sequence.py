"""Sequential guidance scored beside single-frame guidance on the very same frames of the evaluated sweeps.

Every numbered frame of the evaluated patients is a current frame once, with the K-1 frames before it in its sweep
(fewer at a sweep's start) and the moves since, as :mod:`cardiac_dreamer.data.chains` builds them; the single-frame
figures are the image-only estimates of the same current frames, so the ratio between the two is paired.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from ..data.records import TransitionRecord
from ..models.sequence import chain_set, fuse_chains, sequence_frames
from ..models.system import GuidanceModel
from .metrics import summarize

RATIO_KEYS = ("translation_error_mm", "rotation_error_deg")


@torch.inference_mode()
def sequence_metrics(model: GuidanceModel, records: Sequence[TransitionRecord], image_size: int,
                     device: torch.device) -> Optional[Dict[str, Any]]:
    """``metrics.json["guidance_sequence"]``: the sequential estimate's metrics (the guidance keys) with ``frames``
    and ``sequence_frames``, the single frame's on the same frames, and their ratios; None without a trained
    sequential estimator or without numbered frames."""
    frames = sequence_frames(model)
    if not frames:
        return None
    chains, _ = chain_set(model, records, frames, image_size, device)
    if not len(chains):
        return None
    model.cpu().eval()
    sequential = fuse_chains(model, chains)
    labels = chains.targets.double().numpy()
    ours = summarize(labels, sequential.double().numpy())
    single = summarize(labels, chains.estimates[:, 0].double().numpy())
    return {**ours, "frames": len(chains), "sequence_frames": frames, "single_frame": single,
            "vs_single_frame": {key: ours[key] / single[key] if single[key] else None for key in RATIO_KEYS}}


def sequence_line(metrics: Dict[str, Any]) -> str:
    """The one line an evaluation prints about sequential guidance."""
    single, ratio = metrics["single_frame"], metrics["vs_single_frame"]
    parts = [f"{name} {metrics[key]:.3g} {unit} vs {single[key]:.3g} ({_ratio(ratio[key])})"
             for name, key, unit in (("translation error", RATIO_KEYS[0], "mm"),
                                     ("rotation error", RATIO_KEYS[1], "deg"))]
    return (f"sequential guidance ({metrics['sequence_frames']} frames) vs the single frame on the same "
            f"{metrics['frames']} frames: " + ", ".join(parts))


def _ratio(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
