"""A trained checkpoint as an object for notebooks: images (and moves) in, poses in millimetres and degrees out.

Images go through exactly the preprocessing of training: files are decoded by
:func:`~cardiac_dreamer.data.read_grayscale`; in-memory images take the same gray conversion and bilinear resize on
their way to uint8, then :func:`~cardiac_dreamer.data.images_to_float` normalizes them, as the trainer does.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..config import Config
from ..errors import CheckpointError, DataError
from ..data.normalization import NormalizationStats
from ..data.transforms import image_to_gray, images_to_float, read_grayscale
from ..models import CardiacDreamer
from ..training.checkpoints import load_checkpoint
from ..training.precision import select_device

PathLike = Union[str, os.PathLike]
ImageInput = Union[PathLike, Image.Image, np.ndarray, torch.Tensor]
_CHANNEL_COUNTS = (1, 3, 4)  # gray, RGB, RGBA: the last axis of an H x W x C array


def model_from_checkpoint(payload: Mapping[str, Any], path: PathLike) -> CardiacDreamer:
    """The network a checkpoint describes, with its weights and normalization statistics, in eval mode.

    ``pretrained`` is switched off: the saved weights replace any ImageNet start, which need not exist here.
    """
    missing = [key for key in ("config", "model_state", "normalization") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}; it cannot rebuild a model")
    config = Config.from_dict(payload["config"], source=f"{path}: config")
    model_cfg = dataclasses.replace(config.model, pretrained=False, pretrained_weights=None)
    model = CardiacDreamer(model_cfg, image_size=config.data.image_size)
    try:
        model.load_state_dict(payload["model_state"])
        model.set_normalization(NormalizationStats.from_dict(payload["normalization"]))
    except (RuntimeError, DataError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights or statistics do not fit the recorded model ({first_line})") from None
    return model.eval()


class Predictor:
    """A :class:`~cardiac_dreamer.models.CardiacDreamer` in eval mode on a device, fed like at training time.

    ``predict(images)`` -> the pose at t1 of each image, relative to the target plane (at1, ``[x, y, z]`` mm and
    ``[roll, pitch, yaw]`` degrees), predicted from the image alone with a zero move; the guidance, the move that
    brings the probe to the target, is its negation in additive mode. ``predict(images, moves)`` -> the pose the
    world model imagines after each move (its at2), the move in the same units.
    """

    def __init__(self, model: CardiacDreamer, device: Union[str, torch.device] = "auto", batch_size: int = 32):
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.stats = model.normalization
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, path: PathLike, device: Union[str, torch.device] = "auto") -> "Predictor":
        """Load a ``.ckpt`` written by training (best, last, top-k or final); CheckpointError if it is not one."""
        return cls(model_from_checkpoint(load_checkpoint(path, map_location="cpu"), path), device)

    @property
    def image_size(self) -> int:
        return self.model.image_size

    def predict(self, images: Union[ImageInput, Sequence[ImageInput]], moves=None) -> np.ndarray:
        """Poses in physical units: float64 ``[N, 6]``, or ``[6]`` for one image.

        ``images``: one or a list of file paths, PIL images, numpy arrays (``H x W``, ``H x W x C``, ``N x H x W``,
        ``N x H x W x C``; uint8, uint16, or float in [0, 1]) or tensors (``[H, W]``, ``[1, H, W]``,
        ``[N, 1, H, W]``, same dtypes). ``moves``: ``None`` for at1 (direct guidance), or the probe moves
        ``[N, 6]`` (one ``[6]`` move applies to every image) for the imagined at2 after each move.
        """
        batch, single = self.preprocess(images)  # uint8 [N, 1, S, S]
        if moves is None:
            moves_std, key = zero_moves(self.stats, len(batch)), "at1"
        else:
            if self.model.dreamer is None:
                raise ValueError("this checkpoint is a 'direct' model: it has no world model to imagine moves with")
            moves_std, key = self.stats.move.normalize(_moves(moves, len(batch))).float(), "at2"
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                images_float = images_to_float(batch[start : start + self.batch_size].to(self.device))
                move = moves_std[start : start + self.batch_size].to(self.device)
                outputs.append(self.model(images_float, move)[key].float().cpu())
        poses = self.stats.pose.denormalize(torch.cat(outputs).double().numpy())  # [N, 6] mm, deg
        return poses[0] if single else poses

    def preprocess(self, images: Union[ImageInput, Sequence[ImageInput]]) -> tuple[torch.Tensor, bool]:
        """``(uint8 [N, 1, S, S], single)``: the images as the training data loader would hold them."""
        single = not isinstance(images, (list, tuple)) and not _is_stack(images)
        items: List[ImageInput] = [images] if single else _unstack(images)
        if not items:
            raise ValueError("predict needs at least one image")
        arrays = [self._to_gray_array(item) for item in items]
        return torch.from_numpy(np.stack(arrays)).unsqueeze(1), single  # [N, S, S] -> [N, 1, S, S]

    def _to_gray_array(self, image: ImageInput) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            return read_grayscale(Path(image), self.image_size)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
            if image.ndim == 3 and image.shape[0] == 1:  # [1, H, W] -> [H, W]
                image = image[0]
        if isinstance(image, np.ndarray):
            image = _array_to_pil(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"cannot read an image from a {type(image).__name__}; pass a path, PIL image, array, tensor")
        return image_to_gray(image, self.image_size)


def zero_moves(stats: NormalizationStats, count: int) -> torch.Tensor:
    """``count`` standardized "no move" inputs ``[count, 6]`` float32: physical zero is ``-mean / std``."""
    return stats.move.normalize(torch.zeros(count, 6))


def load_model(path: PathLike, device: Union[str, torch.device] = "auto") -> Predictor:
    """``load_model("run/checkpoints/best.ckpt").predict(images)``: see :class:`Predictor`."""
    return Predictor.from_checkpoint(path, device)


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """``H x W`` or ``H x W x C`` -> a PIL image in the mode a file holding these pixels would decode to."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in _CHANNEL_COUNTS):
        raise ValueError(f"an image must be H x W or H x W x C with C in {_CHANNEL_COUNTS}, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0.0 or np.nanmax(array) > 1.0):
            raise ValueError("float images must hold values in [0, 1] (not normalized ones); pass uint8 for 0-255")
        array = np.rint(np.nan_to_num(array) * 255.0).astype(np.uint8)
    if array.dtype == np.uint16 and array.ndim == 2:
        return Image.fromarray(array)  # mode I;16, scaled to 8 bit like a 16-bit PNG
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8, 2-D uint16 or float in [0, 1], got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))


def _is_stack(images: Any) -> bool:
    """A batch in one array: ``N x H x W`` / ``N x H x W x C`` numpy, ``[N, 1, H, W]`` tensor."""
    if isinstance(images, torch.Tensor):
        return images.ndim == 4
    if isinstance(images, np.ndarray):
        return images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in _CHANNEL_COUNTS)
    return False


def _unstack(images: Any) -> List[ImageInput]:
    if isinstance(images, torch.Tensor):
        if images.shape[1] != 1:
            raise ValueError(f"a batch tensor must be [N, 1, H, W], got {list(images.shape)}")
        return list(images[:, 0])
    return list(images)


def _moves(moves: Any, count: int) -> torch.Tensor:
    """Physical moves ``[count, 6]`` float64 from ``[count, 6]`` or one ``[6]`` move for all."""
    moves = torch.as_tensor(np.asarray(moves.cpu() if isinstance(moves, torch.Tensor) else moves, dtype=np.float64))
    if moves.shape == (6,):
        moves = moves.expand(count, 6)
    if moves.shape != (count, 6):
        raise ValueError(f"moves must be [6] or [{count}, 6] (one per image), got {list(moves.shape)}")
    return moves
