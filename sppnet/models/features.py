"""Conv feature maps of a batch of images at several scales, as the detector's stages pass them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MultiScaleFeatures", "pad_stack"]


@dataclass
class MultiScaleFeatures:
    """Conv feature maps of a batch of images at each scale.

    Attributes:
        maps: one Tensor[N, C, h, w] per scale (images of different sizes are zero-padded at the
            bottom/right *after* the conv, so each image's own cells are exact).
        factors: one Tensor[N, 2] (fx, fy) per scale: resized pixels per original pixel.
        image_sizes: the original (height, width) of each image.
    """

    maps: list[Tensor]
    factors: list[Tensor]
    image_sizes: list[tuple[int, int]]

    def to(self, *args: Any, **kwargs: Any) -> MultiScaleFeatures:
        """Move/cast the maps (e.g. ``.to(torch.float16)`` for a cache); factors stay float32."""
        return MultiScaleFeatures(
            [m.to(*args, **kwargs) for m in self.maps],
            [f.to(device=self.maps[0].to(*args, **kwargs).device) for f in self.factors],
            list(self.image_sizes),
        )

    def select(self, index: Sequence[int]) -> MultiScaleFeatures:
        """The features of a subset of the images, in the given order."""
        idx = list(index)
        return MultiScaleFeatures(
            [m[idx] for m in self.maps],
            [f[idx] for f in self.factors],
            [self.image_sizes[i] for i in idx],
        )


def pad_stack(maps: Sequence[Tensor]) -> Tensor:
    """Stack Tensor[C, h_i, w_i] maps into Tensor[N, C, max h, max w], zero-padded bottom/right."""
    if all(m.shape == maps[0].shape for m in maps):
        return torch.stack(list(maps))
    h = max(m.shape[-2] for m in maps)
    w = max(m.shape[-1] for m in maps)
    return torch.stack([F.pad(m, (0, w - m.shape[-1], 0, h - m.shape[-2])) for m in maps])
