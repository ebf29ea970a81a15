"""A trained checkpoint as an object for notebooks: images (and moves) in, poses in millimetres and degrees out.

Images go through exactly the preprocessing of training: files are decoded by
:func:`~cardiac_dreamer.data.read_grayscale`; in-memory images take the same gray conversion and bilinear resize on
their way to uint8, then :func:`~cardiac_dreamer.data.images_to_float` normalizes them, as the trainer does.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..config import normalize_precision, whole_number
from ..errors import ConfigError, DataError
from ..data.transforms import image_to_gray, images_to_float, read_grayscale
from ..geometry import as_moves, folded_poses, unwrapped_poses
from ..runtime.devices import resolve_precision, select_device
from ..models.registry import can_imagine
from ..models.sequence import fuse, sequence_frames
from ..models.system import GuidanceModel
from .loading import load_run

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
ImageInput = Union[PathLike, Image.Image, np.ndarray, torch.Tensor]
_CHANNEL_COUNTS = (1, 2, 3, 4)  # gray, gray + alpha, RGB, RGBA: the last axis of an H x W x C array
# An N x H x W stack of images narrower than this is taken for an H x W x C image with too many channels: an
# [H, W, 5] array is no 5-px-wide ultrasound sweep.
MIN_STACK_WIDTH = 16


class Predictor:
    """A trained model (:mod:`cardiac_dreamer.models`) in eval mode on a device, fed like at training time.

    ``predict(images)`` -> the pose at t1 of each image, relative to the target plane (at1, ``[x, y, z]`` mm and
    ``[roll, pitch, yaw]`` degrees), predicted from the image alone; the guidance, the move that brings the probe
    to the target, is its negation in additive mode. ``predict(images, moves)`` -> the pose the
    world model imagines after each move (its at2), the move in the same units. For real-time guidance wrap it in
    a :class:`~cardiac_dreamer.guidance.session.GuidanceSession`.
    """

    def __init__(self, model: GuidanceModel, device: Union[str, torch.device] = "auto", batch_size: int = 32,
                 precision: str = "32"):
        if not isinstance(model, GuidanceModel):
            raise TypeError(f"Predictor takes a model (load_model(path) gives one), got {type(model).__name__}; "
                            "for a checkpoint file use Predictor.from_checkpoint(path)")
        self.batch_size = whole_number(batch_size, "batch_size")
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        # "32" gives the figures evaluation reports; "bf16" (or "16") trades ~0.1 mm / deg of rounding for speed
        # where the hardware has it: on a CPU with native bf16 the production model imagines 1.8x faster with
        # spatial tokens, 1.9x with channel ones (docs/performance.md). Elsewhere it falls back, saying so in one
        # line, as training does. Whatever it computes in, what it returns is float32 or float64.
        self.precision = resolve_precision(normalize_precision(precision, "precision"), self.device)
        if model.config.sequence_frames and not self.sequence_frames:
            log.warning("this checkpoint's sequential estimator is untrained (the sequence stage trains the run's "
                        "deployed checkpoint, checkpoints/averaged.ckpt when the run averaged its top-k, and keeps "
                        "it untrained when no epoch beat the single frame): history is fused by the median")

    def __repr__(self) -> str:
        sequence = f", sequence_frames={self.sequence_frames}" if self.sequence_frames else ""
        return (f"Predictor(variant={self.model.variant!r}, image_size={self.image_size}, "
                f"composition={self.composition!r}, device={str(self.device)!r}{sequence})")

    @classmethod
    def from_checkpoint(cls, path: PathLike, device: Union[str, torch.device] = "auto",
                        precision: str = "32") -> "Predictor":
        """Load a ``.ckpt`` written by training (best, last, top-k, averaged or final), or a run directory's
        deployed checkpoint (``averaged.ckpt`` when the run wrote one, else ``best.ckpt``); CheckpointError if it
        is not one."""
        return cls(load_run(path).model, device, precision=precision)

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def composition(self) -> str:
        """How a move changes a pose for this model: ``additive`` or ``se3`` (:mod:`cardiac_dreamer.geometry`)."""
        return self.model.config.composition

    @property
    def can_imagine(self) -> bool:
        """Whether ``predict(images, moves)`` works: world models only, not the ``direct`` variant."""
        return can_imagine(self.model)

    @property
    def sequence_frames(self) -> int:
        """K when the checkpoint holds a trained sequential estimator (a session fuses up to K frames with it), else
        0 (:mod:`cardiac_dreamer.models.sequence`)."""
        return sequence_frames(self.model)

    def fuse(self, features: torch.Tensor, estimates: np.ndarray, moves: np.ndarray) -> np.ndarray:
        """float64 ``[6]``: at1 of the current frame from ``T`` frames, the current first: their pooled features
        ``[T, 512]`` (:attr:`Look.pooled`), their own estimates ``[T, 6]`` and the moves from each to the present
        ``[T, 6]`` (mm, degrees; zeros for the current frame). Estimates are read within 180 deg of the training
        mean, as the model estimates them and the estimator learnt them (a look folds its angles into [-180, 180))."""
        if not self.sequence_frames:
            raise ConfigError("this checkpoint has no trained sequential estimator (model.sequence_frames)")
        estimates = unwrapped_poses(estimates, around=self.model.pose_mean.double().cpu().numpy())
        features = features.to(self.device, torch.float32)[None]  # [T, 512] -> [1, T, 512]
        estimates, moves = (torch.as_tensor(np.asarray(values), dtype=torch.float32, device=self.device)[None]
                            for values in (estimates, moves))  # [T, 6] -> [1, T, 6]
        present = torch.ones(features.shape[:2], dtype=torch.bool, device=self.device)
        with self.inference():
            return fuse(self.model, features, estimates, moves, present)[0].double().cpu().numpy()

    def predict(self, images: Union[ImageInput, Sequence[ImageInput]], moves=None) -> np.ndarray:
        """Poses in physical units, angles folded into [-180, 180): float64 ``[N, 6]``, or ``[6]`` for one image.

        ``images``: one or a list of file paths, PIL images, numpy arrays (``H x W``, ``H x W x C`` with C 1-4,
        ``N x H x W``, ``N x H x W x C``; uint8, float in [0, 1], or uint16 for ``H x W``) or tensors (``[H, W]``,
        ``[C, H, W]``, ``[N, C, H, W]``, the same dtypes or bf16 / fp16). An image that cannot be used (NaN
        pixels, a wrong shape or type, transparency) raises :class:`~cardiac_dreamer.errors.DataError`.
        ``moves``: ``None`` for at1 (direct guidance), or the probe moves ``[N, 6]`` (one ``[6]`` move applies to
        every image) for the imagined at2 after each move.
        """
        batch, single = self.preprocess(images)  # uint8 [N, 1, S, S]
        key, move = "at1", None
        if moves is not None:
            if not self.can_imagine:
                raise ConfigError("this checkpoint is a 'direct' model: it has no world model to imagine moves with")
            key, move = "at2", as_moves(moves, len(batch)).float()
        outputs = []
        with self.inference():
            for start in range(0, len(batch), self.batch_size):
                images_float = images_to_float(batch[start : start + self.batch_size].to(self.device))
                chunk = None if move is None else move[start : start + self.batch_size].to(self.device)
                outputs.append(self.model(images_float, chunk)[key].double().cpu())
        poses = folded_poses(torch.cat(outputs).numpy())  # [N, 6] mm, deg
        return poses[0] if single else poses

    def look(self, image: ImageInput) -> "Look":
        """One image, encoded once: its pose (at1) and, for world models, the poses imagined after any moves from
        it, so a planner comparing K candidate moves pays one backbone pass per frame, not K + 1."""
        batch, _ = self.preprocess(image)  # uint8 [1, 1, S, S]; a batch of one is one image
        if len(batch) != 1:
            raise DataError(f"a session reads one image per frame, got a batch of {len(batch)} (a numpy N x H x W "
                            "array is N gray images: give one image as H x W or H x W x C)")
        with self.inference():
            features = self.model.backbone(images_to_float(batch.to(self.device)))  # [1, 512, h, w]
            pose = self.model.estimate(features)[0].double().cpu().numpy()
        return Look(folded_poses(pose), features.float(), self)

    @contextmanager
    def inference(self) -> Iterator[None]:
        """No autograd, and the predictor's precision (autocast for bf16 / fp16)."""
        with torch.inference_mode(), self.precision.autocast(self.device):
            yield

    def preprocess(self, images: Union[ImageInput, Sequence[ImageInput]]) -> tuple[torch.Tensor, bool]:
        """``(uint8 [N, 1, S, S], single)``: the images as the training data loader would hold them."""
        if isinstance(images, torch.Tensor):
            _check_holds_pixels(images)
        if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[-1] not in _CHANNEL_COUNTS:
            raise DataError(f"a numpy batch must be N x H x W or N x H x W x C with C in {_CHANNEL_COUNTS}, got shape "
                            f"{tuple(images.shape)} (an [N, C, H, W] batch is a tensor's layout: "
                            "torch.from_numpy(array))")
        if isinstance(images, np.ndarray) and images.ndim == 3 and \
                max(_CHANNEL_COUNTS) < images.shape[-1] < MIN_STACK_WIDTH:
            raise DataError(f"a numpy array of shape {tuple(images.shape)} is neither one image (H x W x C with C in "
                            f"{_CHANNEL_COUNTS}) nor a stack of gray images (N x H x W, each at least "
                            f"{MIN_STACK_WIDTH} px wide)")
        single = not isinstance(images, (list, tuple)) and not _is_stack(images)
        items: List[ImageInput] = [images] if single else _unstack(images)
        if not items:
            raise DataError("predict needs at least one image")
        arrays = [self._to_gray_array(item) for item in items]
        return torch.from_numpy(np.stack(arrays)).unsqueeze(1), single  # [N, S, S] -> [N, 1, S, S]

    def _to_gray_array(self, image: ImageInput) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            if not str(image).strip():  # '' would be read as the current folder
                raise DataError("an image path is empty (an unset variable?)")
            return read_grayscale(_local_path(image), self.image_size)
        if isinstance(image, torch.Tensor):
            image = _tensor_to_array(image)
        if isinstance(image, np.ndarray):
            image = _array_to_pil(image)
        if not isinstance(image, Image.Image):
            raise DataError(f"cannot read an image from a {type(image).__name__}; pass a path, PIL image, array, "
                            "tensor")
        if min(image.size) == 0:
            raise DataError(f"an image must have at least one pixel, got {image.size[0]} x {image.size[1]}")
        return image_to_gray(image, self.image_size)


@dataclass(frozen=True)
class Look:
    """An image as :meth:`Predictor.look` encoded it."""

    pose: np.ndarray  # [6] at1, mm and degrees (angles in [-180, 180), as predict gives them)
    features: torch.Tensor  # [1, 512, h, w] float32 on the predictor's device
    predictor: Predictor

    @property
    def pooled(self) -> torch.Tensor:
        """``[512]``: the features averaged over the image, what the sequential estimator reads of this frame."""
        return self.features.mean((2, 3))[0]

    def imagine(self, moves) -> np.ndarray:
        """float64 ``[K, 6]``: the poses the world model imagines after each move (``[K, 6]`` mm, degrees; angles in
        [-180, 180), as predict gives them)."""
        model = self.predictor.model
        if not can_imagine(model):
            raise ConfigError("this checkpoint is a 'direct' model: it has no world model to imagine moves with")
        count = len(moves) if np.ndim(moves) >= 2 else 1  # a [K, 6] array, or one [6] move
        moves = as_moves(moves, count).float().to(self.features.device)  # [K, 6]
        with self.predictor.inference():
            return folded_poses(model.imagine_moves(self.features, moves).double().cpu().numpy())


def load_model(path: PathLike, device: Union[str, torch.device] = "auto", precision: str = "32") -> Predictor:
    """``load_model("run/checkpoints/best.ckpt").predict(images)``: see :class:`Predictor`."""
    return Predictor.from_checkpoint(path, device, precision=precision)


def _local_path(path: PathLike) -> Path:
    """``path``, or the same path with a Windows export's backslashes as separators where only that exists (a path
    taken from a transitions file, as training reads them)."""
    path = Path(path)
    if os.sep == "/" and "\\" in str(path) and not path.exists():
        forward = Path(str(path).replace("\\", "/"))
        if forward.exists():
            return forward
    return path


_TENSOR_CHANNELS = (1, 3, 4)  # a 3-D tensor is one image, channels first: gray, RGB, RGBA (torchvision's layout)


def _tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """``[H, W]`` or channels-first ``[C, H, W]`` -> ``H x W`` or ``H x W x C``; half precision floats widened,
    since numpy has no bf16. Gray frames stacked as ``[N, H, W]`` are refused: with N of 3 they would pass for one
    colour image, so a batch of gray images is ``[N, 1, H, W]``."""
    _check_holds_pixels(tensor)
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    if tensor.ndim == 3:
        if tensor.shape[0] not in _TENSOR_CHANNELS:
            raise DataError(f"a 3-D tensor is one image [C, H, W] with C of {_TENSOR_CHANNELS}, got "
                            f"{list(tensor.shape)}; give a batch of gray images as [N, 1, H, W]")
        tensor = tensor.permute(1, 2, 0)
    return tensor.numpy()


def _check_holds_pixels(tensor: torch.Tensor) -> None:
    """A meta tensor has no values and a sparse one no pixel grid: refused as input, like any other non-image."""
    if tensor.is_meta or tensor.layout != torch.strided:
        kind = "a meta tensor (no values)" if tensor.is_meta else f"a {tensor.layout} tensor"
        raise DataError(f"an image tensor must hold its pixels densely, got {kind}; give a dense tensor")


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """``H x W`` or ``H x W x C`` -> a PIL image in the mode a file holding these pixels would decode to."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in _CHANNEL_COUNTS):
        raise DataError(f"an image must be H x W or H x W x C with C in {_CHANNEL_COUNTS} (a tensor: [H, W] or "
                        f"[C, H, W]), got shape {tuple(array.shape)}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise DataError("the image holds NaN or infinite pixels")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise DataError("float images must hold values in [0, 1] (not normalized ones); pass uint8 for 0-255")
        array = np.rint(array * 255.0).astype(np.uint8)
    if array.dtype == np.uint16 and array.ndim == 2:
        return Image.fromarray(array)  # mode I;16, scaled to 8 bit like a 16-bit PNG
    if array.dtype != np.uint8:
        raise DataError(f"images must be uint8, float in [0, 1], or uint16 for H x W, got {array.dtype} with shape "
                        f"{tuple(array.shape)}")
    return Image.fromarray(np.ascontiguousarray(array))


def _is_stack(images: Any) -> bool:
    """A batch in one array: ``N x H x W`` / ``N x H x W x C`` numpy, ``[N, C, H, W]`` tensor."""
    if isinstance(images, torch.Tensor):
        return images.ndim == 4
    if isinstance(images, np.ndarray):
        return images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in _CHANNEL_COUNTS)
    return False


def _unstack(images: Any) -> List[ImageInput]:
    return list(images)  # a tensor's items are [C, H, W]: _tensor_to_array reads them
