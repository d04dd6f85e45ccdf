"""Dense sliding windows: a cheap, image-independent proposal source for tests and baselines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sppnet.proposals.base import ProposalSource, check_image, unique_boxes

__all__ = ["SlidingWindows", "sliding_windows"]


def sliding_windows(
    height: int,
    width: int,
    sizes: Sequence[float] = (32, 64, 128, 256),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    stride_fraction: float = 0.5,
) -> Tensor:
    """Windows of every size and aspect ratio, slid over an ``height x width`` image.

    A window of size ``s`` and aspect ratio ``a`` (height / width) is ``s / sqrt(a)`` wide and
    ``s * sqrt(a)`` tall (area ``s**2``), clipped to the image; windows that do not fit in the image
    in one dimension are shrunk to the image in that dimension. Positions step by
    ``stride_fraction`` times the window's side and always include the last position flush with
    the right/bottom edge, so the whole image is covered.

    Returns:
        Tensor[M, 4] float32 xyxy (0-based, exclusive x2/y2), no duplicates, ordered by size, then
        aspect ratio, then row-major position.
    """
    if height < 1 or width < 1:
        raise ValueError(f"sliding_windows: image size must be positive, got {height}x{width}")
    if not 0 < stride_fraction <= 1:
        raise ValueError(
            f"sliding_windows: stride_fraction must be in (0, 1], got {stride_fraction}"
        )
    if not sizes or not aspect_ratios or min(sizes) <= 0 or min(aspect_ratios) <= 0:
        raise ValueError(
            f"sliding_windows: sizes and aspect_ratios must be non-empty and positive, got "
            f"{list(sizes)} and {list(aspect_ratios)}"
        )
    groups = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = min(float(width), size / ratio**0.5)
            h = min(float(height), size * ratio**0.5)
            xs = _positions(width, w, stride_fraction)
            ys = _positions(height, h, stride_fraction)
            y1, x1 = torch.meshgrid(ys, xs, indexing="ij")
            x1, y1 = x1.reshape(-1), y1.reshape(-1)
            groups.append(torch.stack([x1, y1, x1 + w, y1 + h], dim=1))
    boxes = torch.cat(groups).float()
    return boxes[unique_boxes(boxes)]


def _positions(extent: int, window: float, stride_fraction: float) -> Tensor:
    last = extent - window
    step = window * stride_fraction
    count = int(last // step) + 1
    starts = torch.arange(count, dtype=torch.float64) * step
    if starts[-1] < last:
        starts = torch.cat([starts, torch.tensor([last], dtype=torch.float64)])
    return starts


class SlidingWindows(ProposalSource):
    """:func:`sliding_windows` as a :class:`ProposalSource` (the image's content is ignored)."""

    name = "sliding_windows"

    def __init__(
        self,
        sizes: Sequence[float] = (32, 64, 128, 256),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        stride_fraction: float = 0.5,
    ) -> None:
        self.sizes = [float(s) for s in sizes]
        self.aspect_ratios = [float(a) for a in aspect_ratios]
        self.stride_fraction = float(stride_fraction)
        sliding_windows(1, 1, self.sizes, self.aspect_ratios, self.stride_fraction)  # validate

    def params(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes,
            "aspect_ratios": self.aspect_ratios,
            "stride_fraction": self.stride_fraction,
        }

    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        height, width = check_image(image)
        boxes = sliding_windows(height, width, self.sizes, self.aspect_ratios, self.stride_fraction)
        return boxes.to(image.device)
