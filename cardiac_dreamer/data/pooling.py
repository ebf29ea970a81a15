"""Pooled pixels: an image as the mean of each cell of a few square grids.

Why: the pixel ridge baseline and the phantom's image checks both ask what a linear model of where the bright and
dark regions lie can read from an image; they must read the same features.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

GRIDS = (16, 8, 4)  # cells per side: coarse layout and finer detail, 336 features


def pooled_pixels(images: np.ndarray, grids: Sequence[int]) -> np.ndarray:
    """``[N, H, W]`` -> ``[N, sum(g * g)]``: each image averaged over a ``g x g`` grid of equal cells, for each grid
    (``H`` and ``W`` must be multiples of every ``g``; model image sizes are multiples of 32)."""
    count, height, width = images.shape
    features = []
    for grid in grids:
        if height % grid or width % grid:
            raise ValueError(f"image size {height}x{width} is not a multiple of the {grid}x{grid} grid")
        cells = images.reshape(count, grid, height // grid, grid, width // grid)  # [N, g, h, g, w]
        features.append(cells.mean(axis=(2, 4)).reshape(count, grid * grid))
    return np.concatenate(features, axis=1)
