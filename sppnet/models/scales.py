"""Multi-scale feature extraction: how large each image is made, and which scale each window uses.

SPP-net resizes an image so that its shorter side is ``s`` and runs the conv layers once per scale
``s``. Each window is then pooled at the *single* scale at which its area, after resizing, is
closest to 224 x 224 pixels (the paper's section 4.1: "we choose a single scale ... such that the
scaled candidate window has a number of pixels closest to 224 x 224"). This module holds those two
rules as plain functions on tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["assign_scales", "resize_factor", "resized_size"]


def resize_factor(height: int, width: int, scale: int, max_size: int | None = None) -> float:
    """The factor that makes the shorter side ``scale`` pixels, capped so the longer side stays
    at most ``max_size``.

    Args:
        height, width: the original image size in pixels (>= 1).
        scale: target length of the shorter side in pixels (>= 1).
        max_size: optional cap on the longer side after resizing.

    Returns:
        The resize factor (new pixels per original pixel), a Python float.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if scale < 1:
        raise ValueError(f"scale must be a positive number of pixels, got {scale}")
    factor = scale / min(height, width)
    if max_size is not None:
        if max_size < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        factor = min(factor, max_size / max(height, width))
    return factor


def resized_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """The integer size ``(round(height * factor), round(width * factor))``, at least 1 x 1."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def assign_scales(boxes: Tensor, factors: Tensor | Sequence[float], target_side: float) -> Tensor:
    """For each window, the index of the scale at which its area is closest to ``target_side**2``.

    Args:
        boxes: Tensor[K, 4] xyxy in original-image pixels (any float dtype).
        factors: the resize factor of each scale for this image, Tensor[S] or a sequence of S
            floats (``S >= 1``). With non-uniform per-axis factors pass their geometric mean.
        target_side: side of the reference square (224 in the paper), pixels.

    Returns:
        Tensor[K] int64 on ``boxes.device``, values in [0, S). Ties go to the smaller index.
        Degenerate (zero-area) windows go to the largest factor, where they are least degenerate.

    The comparison is on absolute area difference ``|w * h * f**2 - target_side**2|``, as stated
    in the paper; widths and heights are clamped at 0 first.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be Tensor[K, 4], got shape {tuple(boxes.shape)}")
    if target_side <= 0:
        raise ValueError(f"target_side must be > 0, got {target_side}")
    factors_t = torch.as_tensor(factors, dtype=torch.float64, device=boxes.device).reshape(-1)
    if factors_t.numel() == 0 or bool((factors_t <= 0).any()):
        raise ValueError(f"factors must be a non-empty list of positive numbers, got {factors}")
    if factors_t.numel() == 1:
        return torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    b = boxes.to(torch.float64)
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    diff = (area[:, None] * factors_t[None, :] ** 2 - float(target_side) ** 2).abs()
    index = diff.argmin(dim=1)
    return torch.where(area > 0, index, factors_t.argmax().expand_as(index))
