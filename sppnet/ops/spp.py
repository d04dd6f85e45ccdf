"""Spatial pyramid pooling of whole feature maps (SPP-net classification)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet.ops._checks import check_input, check_levels, check_mode, num_bins

__all__ = ["SpatialPyramidPooling", "spp"]

_FN = "spp"


def spp(input: Tensor, levels: Sequence[int] = (4, 2, 1), mode: str = "max") -> Tensor:
    """Spatial pyramid pooling: a feature map of any size in, a fixed-length vector out.

    Bin ``(i, j)`` of level ``n`` covers rows ``floor(i*H/n) .. ceil((i+1)*H/n) - 1`` and columns
    ``floor(j*W/n) .. ceil((j+1)*W/n) - 1`` (the paper's appendix rule, identical to
    ``adaptive_max_pool2d`` / ``adaptive_avg_pool2d``). It works for any ``H, W >= 1``: where the
    map is smaller than ``n`` neighbouring bins overlap, but none is ever empty. NaN in a bin pools
    to NaN (max and avg).

    Args:
        input: Tensor[N, C, H, W], floating, contiguous or channels_last, any device.
        levels: pyramid levels, any non-empty sequence of positive ints; default ``(4, 2, 1)``
            (21 bins, so a 256-channel map gives 5376 values).
        mode: ``"max"`` or ``"avg"``.

    Returns:
        Tensor[N, C * sum(n*n for n in levels)] of ``input``'s dtype: levels in the given order,
        each level's ``(C, n, n)`` block flattened row-major (channel, row, column).
    """
    check_input(input, _FN)
    levels = check_levels(levels, _FN)
    mode = check_mode(mode, _FN)
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    # The whole-map output is small (N x C x bins): pooling per level and one cat is cheapest.
    return torch.cat([pool(input, n).flatten(1) for n in levels], dim=1)


class SpatialPyramidPooling(nn.Module):
    """Module form of :func:`spp`.

    Args:
        levels: pyramid levels, default ``(4, 2, 1)``.
        mode: ``"max"`` or ``"avg"``.
    """

    def __init__(self, levels: Sequence[int] = (4, 2, 1), mode: str = "max") -> None:
        super().__init__()
        name = type(self).__name__
        self.levels = check_levels(levels, name)
        self.mode = check_mode(mode, name)

    def output_size(self, channels: int) -> int:
        """Length of the vector for a ``channels``-channel map: ``C * sum(n*n)``."""
        return channels * num_bins(self.levels)

    def forward(self, input: Tensor) -> Tensor:
        return spp(input, self.levels, self.mode)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}, bins={num_bins(self.levels)}"
