"""Image decoding, normalization and photometric augmentation.

Decoding happens once per image on the CPU (to uint8, the compact form the cache and the data loader carry);
conversion to float and augmentation happen batched on whatever device the batch is on. Augmentation is only
photometric: a geometric change (flip, shift, rotation) would change the probe pose the labels describe.
"""
from __future__ import annotations

import logging
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import DataError
from ..io.fileio import os_reason, require_regular_file

# ImageNet's RGB mean and std seen through the luma weights (0.299, 0.587, 0.114): the backbone's first layer
# may start from ImageNet weights summed over the colour channels, so inputs should look like a gray ImageNet.
IMAGE_MEAN = 0.449
IMAGE_STD = 0.226

# Ultrasound frames are at most a few megapixels; 2**25 (e.g. 8192x4096, 100 MB decoded as RGB) is far beyond
# them. A PNG of a few hundred bytes can claim gigapixels, so the size is checked from the header, before decoding.
MAX_IMAGE_PIXELS = 2**25

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
TWELVE_BIT_MAX = 4095
_WARNINGS_LOCK = threading.Lock()  # see _open_header
_TWELVE_BIT_WARNED = threading.Event()  # said once per process: a folder of 12-bit data would say it per image

log = logging.getLogger(__name__)


def read_grayscale(path: Union[str, Path], size: int) -> np.ndarray:
    """Decode ``path`` into a uint8 ``[size, size]`` array, one channel whatever the file holds.

    Conversions that keep the picture's meaning are done: colour, palette and CMYK images go through PIL's luma
    conversion, an alpha channel that is fully opaque is dropped, 16-bit images (and 32-bit integer ones holding
    16-bit values) are scaled to 8 bit rather than clipped. Images whose gray levels would be a guess are refused
    with :class:`DataError`: floating-point pixels (no fixed scale), integer pixels outside 0-65535, transparent
    pixels (the export did not say what lies under them) and multi-frame files (which frame?). Other sizes are
    resized with PIL's bilinear filter, which averages over the whole footprint when shrinking (no aliasing).
    Truncated, undecodable and oversized files (more than :data:`MAX_IMAGE_PIXELS`, refused from the header)
    raise :class:`DataError` naming the path.
    """
    with open_image(path) as image:
        return image_to_gray(image, size, source=str(path))


@contextmanager
def open_image(path: Union[str, Path]) -> Iterator[Image.Image]:
    """``path`` opened and fully decoded (closed on exit). Its size is checked from the header before any pixel is
    decoded, and every failure is a :class:`DataError` naming the path: a hostile file can make PIL's decoders
    raise almost any exception type, so all of them are caught here, around PIL's calls only."""
    require_regular_file(Path(path), "image", DataError)  # a pipe would block the read for ever
    try:
        image = _open_header(path)
    except OSError as error:
        if error.filename is None:  # PIL's own "cannot identify image file": not the operating system's refusal
            raise DataError(f"{path}: cannot decode image ({_describe(error)})") from None
        raise DataError(f"{path}: cannot read image ({os_reason(error)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(  # PIL's own limit, higher than ours, stopped it: the header claims even more pixels
            f"{path}: image too large: its header claims more pixels than the {MAX_IMAGE_PIXELS}-pixel limit "
            "(refused before decoding)"
        ) from None
    except Exception as error:
        raise DataError(f"{path}: cannot decode image ({_describe(error)})") from None
    with image:
        _check_dimensions(image, str(path), " (refused from its header, before decoding)")
        try:
            image.load()  # decode now: truncation and corrupt data surface here, not later
            getattr(image, "n_frames", 1)  # counting frames reads the rest of a multi-frame file
        except Exception as error:
            raise DataError(f"{path}: cannot decode image ({_describe(error)})") from None
        yield image


def image_to_gray(image: Image.Image, size: int, source: str = "image") -> np.ndarray:
    """A decoded PIL image -> uint8 ``[size, size]`` under the rules of :func:`read_grayscale` (which uses it, as
    does the Predictor for in-memory images, so both see identical pixels)."""
    _check_dimensions(image, source)
    problem = _unsound_conversion(image)
    if problem:
        raise DataError(f"{source}: cannot use image ({image.mode}, {problem})")
    gray = _to_gray(image, source)
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(gray, dtype=np.uint8)  # a writable copy, so torch.from_numpy can share it


def dim_sixteen_bit(image: Image.Image) -> bool:
    """Whether a 16-bit image holds no value above 12 bits (4095): scaled as 16-bit it comes out nearly black
    (gray 16 of 255 at most), which is how 12-bit data stored in a 16-bit file looks to training."""
    return image.mode in _SIXTEEN_BIT_MODES and int(np.asarray(image).max()) <= TWELVE_BIT_MAX


def _open_header(path: Union[str, Path]) -> Image.Image:
    """``Image.open`` (which reads the header only), with PIL's decompression-bomb warning raised like its bomb
    error, so that neither prints nor escapes. Warning filters are process-wide, hence the lock: threads opening
    images in parallel must not restore each other's filters. Decoding, the slow part, happens outside it."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def _check_dimensions(image: Image.Image, source: str, when: str = "") -> None:
    """DataError unless ``image`` has pixels and at most :data:`MAX_IMAGE_PIXELS`; ``when`` says how it was caught."""
    width, height = image.size
    if width < 1 or height < 1:
        raise DataError(f"{source}: image has no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{source}: image of {width}x{height} pixels is larger than the {MAX_IMAGE_PIXELS}-pixel "
                        f"limit{when}")


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def _unsound_conversion(image: Image.Image) -> Optional[str]:
    """Why ``image`` cannot be turned into gray levels without guessing, or None when it can."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        return f"{frames} frames in one file; export one image per file"
    if image.mode == "F":
        return "floating-point pixels have no fixed gray scale; export 8- or 16-bit images"
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)  # PIL's getextrema refuses the byte-ordered modes (I;16B, a big-endian TIFF)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            return f"pixel values {low}..{high} do not fit 16 bits"
    alpha = _alpha(image)
    if alpha is not None and alpha.getextrema()[0] < 255:
        return "transparent pixels, whose gray level the file does not define; export opaque images"
    return None


def _alpha(image: Image.Image) -> Optional[Image.Image]:
    """The alpha channel, or None when the image has none: an alpha band (not LAB's "A", a colour axis), or a
    transparent colour (a PNG's tRNS chunk, in palette, gray or RGB images), made into one."""
    if image.mode in _ALPHA_MODES:
        return image.getchannel("A")
    if "transparency" not in image.info:
        return None
    if image.mode == "P":
        return image.convert("RGBA").getchannel("A")
    values, key = np.asarray(image), np.asarray(image.info["transparency"])
    hidden = (values == key).all(-1) if values.ndim == 3 else values == key  # the transparent colour's pixels
    return Image.fromarray(np.where(hidden, 0, 255).astype(np.uint8))


def _to_gray(image: Image.Image, source: str) -> Image.Image:
    if image.mode == "L":
        return image.copy()
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32).clip(0, 65535)
        if values.max() <= TWELVE_BIT_MAX and not _TWELVE_BIT_WARNED.is_set():
            _TWELVE_BIT_WARNED.set()  # training would otherwise go on, silently, on gray levels 0-16
            log.warning("%s: a 16-bit image with no value above %d (12-bit data?) reads nearly black once scaled "
                        "as 16-bit (gray 16 of 255 at most); export 8-bit or full-range 16-bit images (said once; "
                        "cardiac-train --check_data counts them in a data directory)", source, TWELVE_BIT_MAX)
        return Image.fromarray(np.rint(values / 257.0).astype(np.uint8))  # 65535 -> 255; 2-D uint8 -> mode "L"
    try:
        return image.convert("L")
    except ValueError as error:  # a mode PIL has no gray conversion for, e.g. LAB
        raise DataError(f"{source}: cannot use image ({image.mode}, {error})") from None


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 1, H, W]`` -> float32 normalized ``(x / 255 - IMAGE_MEAN) / IMAGE_STD``, on the same device."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images_to_float expects uint8 images, got {images.dtype}")
    return images.to(torch.float32).div_(255.0).sub_(IMAGE_MEAN).div_(IMAGE_STD)


class PhotometricAugment(nn.Module):
    """Per-sample random brightness, contrast, gamma and light gaussian noise, on a batch of normalized images.

    Works on ``[B, 1, H, W]`` images as :func:`images_to_float` returns them: they are mapped back to [0, 1],
    changed, clamped and normalized again, a handful of element-wise operations on the device. It draws from
    torch's global RNG (seed it for reproducible runs) and is the identity in ``eval()`` mode.
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.2, gamma: float = 0.2, noise_std: float = 0.02):
        super().__init__()
        self.brightness = brightness  # added offset drawn from [-b, b]
        self.contrast = contrast  # factor around each image's mean drawn from [1 - c, 1 + c]
        self.gamma = gamma  # exponent drawn from [1 - g, 1 + g]
        self.noise_std = noise_std  # noise sigma drawn per image from [0, noise_std]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return images
        x = (images * IMAGE_STD + IMAGE_MEAN).clamp(0.0, 1.0)  # [B, 1, H, W] in [0, 1]
        shape = x.shape[:-3] + (1, 1, 1)  # one draw per image

        def draw(spread: float) -> torch.Tensor:  # uniform in [-spread, spread]
            return (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * spread

        x = x.pow(1.0 + draw(self.gamma))
        mean = x.mean(dim=(-3, -2, -1), keepdim=True)
        x = (x - mean) * (1.0 + draw(self.contrast)) + mean + draw(self.brightness)
        sigma = torch.rand(shape, device=x.device, dtype=x.dtype) * self.noise_std
        x = x + torch.randn_like(x) * sigma
        return (x.clamp(0.0, 1.0) - IMAGE_MEAN) / IMAGE_STD
