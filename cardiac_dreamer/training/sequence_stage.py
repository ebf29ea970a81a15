"""The sequence stage: after the main fit, train the best checkpoint's sequential estimator and save it there.

Why a second stage: the fuser reads the trained backbone's features, so it is fitted once they exist, on features
computed once per frame (eval mode, no gradient) rather than inside every step of the hand-written Trainer. It
costs one backbone pass over the training and validation frames and a few thousand small steps.

How: chains of K frames from the training patients' sweeps (:mod:`cardiac_dreamer.data.chains`); each training
chain keeps a random number of its past frames (0 to K-1), so the estimator serves any history a session has;
the main task's pose loss (SmoothL1 in training stds, ``loss.smooth_l1_beta``); the epoch with the lowest
validation error (full chains of the validation patients, mean over the six axes in training stds) is kept, the
untrained fuser (the single frame) included, so the stage never leaves a fuser worse on the validation patients than
the image alone: when no epoch beats the single frame, the fuser stays marked untrained and the checkpoint guides as
one without it. A resumed run whose deployed checkpoint already went through the stage keeps it as it is (the stage
is not run twice).
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch

from ..config import Config
from ..data.chains import check_frame_numbers
from ..data.records import TransitionRecord
from ..geometry import pose_error
from ..io.checkpoint import ModelCheckpoint, load_checkpoint, save_checkpoint
from ..io.fileio import link_or_copy
from ..losses import pose_loss
from ..models.registry import model_from_checkpoint
from ..models.sequence import fuse
from ..models.sequence_inputs import ChainSet, chain_set, fuse_chains
from ..models.system import GuidanceModel
from ..names import AVERAGED_CHECKPOINT

log = logging.getLogger(__name__)

EPOCHS, BATCH_SIZE, LR, WEIGHT_DECAY = 30, 128, 1e-3, 0.01
STAGE_DONE = "sequence_epoch"  # the checkpoint metric the stage writes: its presence says the stage ran


def fit_sequence_estimator(model: GuidanceModel, train: ChainSet, val: ChainSet, seed: int,
                           beta: float = 1.0) -> Dict[str, float]:
    """Train ``model.sequence`` in place and keep its best validation epoch; the validation errors (mean absolute,
    in training stds) of the single frame and of the kept fuser, and the epoch kept."""
    estimator = model.sequence.cpu().requires_grad_(True)
    estimator.untrain()  # the single frame is the baseline, whatever the file held (e.g. an average of fusers)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(estimator.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    best, best_epoch, best_state = _validation_errors(model, val), 0, copy.deepcopy(estimator.state_dict())
    single = _validation_errors(model, val, single_frame=True)
    for epoch in range(1, EPOCHS + 1):
        estimator.train()
        for rows in torch.randperm(len(train), generator=generator).split(BATCH_SIZE):
            present = _random_history(train.present[rows], generator)
            predicted = fuse(model, train.features[rows], train.estimates[rows], train.moves[rows], present)
            loss = pose_loss(predicted, train.targets[rows], model.pose_std, beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        errors = _validation_errors(model, val)
        if errors[0] < best[0]:
            best, best_epoch, best_state = errors, epoch, copy.deepcopy(estimator.state_dict())
    estimator.load_state_dict(best_state)
    estimator.requires_grad_(False).eval()
    if best_epoch:
        estimator.trained.fill_(1.0)
        log.info("sequence stage: epoch %d of %d kept; on the validation patients the fused estimate errs %.3g mm / "
                 "%.3g deg per component, the single frame %.3g mm / %.3g deg (%.4f against %.4f training stds, "
                 "which chose the epoch)", best_epoch, EPOCHS, *best[1:], *single[1:], best[0], single[0])
    else:
        log.warning("sequence stage: no epoch beat the single frame on the validation patients (%.3g mm / %.3g deg "
                    "per component, %.4f training stds); the checkpoint keeps guiding from the single frame (and the "
                    "median of a history)", single[1], single[2], single[0])
    return {"val_sequence_error_std": best[0], "val_single_frame_error_std": single[0],
            STAGE_DONE: float(best_epoch)}


def _random_history(present: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Keep the current frame and a random number (0 to K-1) of the most recent past ones of each chain."""
    keep = torch.randint(0, present.shape[1], (len(present), 1), generator=generator)
    return present & (torch.arange(present.shape[1])[None] <= keep)


@torch.no_grad()
def _validation_errors(model: GuidanceModel, chains: ChainSet, single_frame: bool = False
                       ) -> Tuple[float, float, float]:
    """Mean absolute error on full chains (or the current frame alone): over the six axes in training stds, which
    weighs mm and degrees alike and chooses the epoch, and, for the log, over x, y, z in mm and the angles in
    degrees."""
    model.sequence.eval()
    if single_frame:
        predicted = chains.estimates[:, 0]
    else:
        predicted = fuse_chains(model, chains)
    errors = pose_error(chains.targets, predicted).abs()
    return float((errors / model.pose_std).mean()), float(errors[:, :3].mean()), float(errors[:, 3:].mean())


def train_sequence_stage(checkpoint_path: Path, records: Dict[str, Sequence[TransitionRecord]], config: Config,
                         device: torch.device, final_model: Optional[Path] = None, best_link: Optional[Path] = None
                         ) -> Dict[str, float]:
    """Fit the sequential estimator of ``checkpoint_path`` (the run's deployed checkpoint: the best top-k file or
    ``averaged.ckpt``) on the training patients' chains, select it on the validation patients', and write it into
    that file (and the files that are the same file: ``best.ckpt``, the final model when the last epoch was best)."""
    checkpoint = load_checkpoint(checkpoint_path)
    links = [path for path in (best_link, final_model) if path is not None and path.exists()]
    if STAGE_DONE in checkpoint.metrics:  # a resumed run: the stage ran; a kill may have come before the links
        log.info("sequence stage: already done for %s (kept)", checkpoint_path.name)
        for path in links:
            if _left_behind(path, checkpoint_path, checkpoint):
                link_or_copy(checkpoint_path, path)
        return {key: checkpoint.metrics[key] for key in ("val_sequence_error_std", "val_single_frame_error_std",
                                                         STAGE_DONE) if key in checkpoint.metrics}
    model = model_from_checkpoint(checkpoint, str(checkpoint_path))
    frames, size = config.model.sequence_frames, config.data.image_size
    train, _ = chain_set(model, records["train"], frames, size, device)
    val, _ = chain_set(model, records["val"], frames, size, device)
    if not len(train) or not len(val):  # training checks this before the fit; a direct caller may not have
        check_frame_numbers(records, frames, config.data.data_dir)
    model.cpu()
    result = fit_sequence_estimator(model, train, val, config.training.seed, config.loss.smooth_l1_beta)
    same = [path for path in links if path.samefile(checkpoint_path)]
    checkpoint.model_state = model.state_dict()
    checkpoint.metrics = {**checkpoint.metrics, **result}
    save_checkpoint(checkpoint_path, checkpoint)  # a new file: the hard links still hold the old one
    for path in same:
        link_or_copy(checkpoint_path, path)
    return result


def _left_behind(link: Path, deployed: Path, checkpoint: ModelCheckpoint) -> bool:
    """Whether ``link`` is the deployed top-k file as it was before the stage rewrote it (same epoch and step,
    without the stage's result): a kill between the rewrite and the re-linking leaves it so."""
    if deployed.name == AVERAGED_CHECKPOINT or link.samefile(deployed):
        return False  # best.ckpt and the final model are never the averaged file
    other = load_checkpoint(link)
    return (STAGE_DONE not in other.metrics and other.epoch == checkpoint.epoch
            and other.global_step == checkpoint.global_step)
