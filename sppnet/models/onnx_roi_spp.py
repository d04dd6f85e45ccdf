"""RoI spatial pyramid pooling with the paper's mapping, written for ONNX export.

:func:`sppnet.ops.roi_spp` runs custom kernels and data-dependent Python loops that a tracer cannot
follow, and adaptive pooling does not export at sizes that do not divide (pytorch #61172). This
module computes the same values with operations that trace into a static graph whose shapes stay
symbolic (any map size, any number of boxes):

1. the paper's box-to-cell mapping and the integer bin edges of every level, as int64 tensors
   computed from the map's shape at run time (the arithmetic of :mod:`sppnet.ops._bins`, with
   every integer division on non-negative operands, so ONNX's truncating ``Div`` is a floor);
2. max: a 2-D sparse table of the map (block ``(a, b)`` holds the maximum of the ``2**a x 2**b``
   window at each cell, built by ``2 * L`` shifted maxima), then four gathers per bin: a side of
   length ``e`` is covered by the two windows of ``2**floor(log2 e)`` cells anchored at its ends;
   avg: a float64 integral image and four corner gathers per bin.

``L`` (``table_levels``) is fixed at export: the graph handles map sides up to ``2**L - 1`` cells
and checks nothing at run time, so :func:`sppnet.models.onnx_detector.export_detector_onnx`
chooses it from the detector's ``max_size``. A map smaller than the coarsest level works as in
the op (neighbouring bins overlap, none is empty).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GatherRoISPP"]


def _paper_window(lo: Tensor, hi: Tensor, scale: float, size: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`sppnet.ops._bins.paper_window` with the map extent ``size`` a 0-d int64 tensor."""
    top = (size - 1).to(torch.float64)
    zero = torch.zeros((), dtype=torch.float64)
    first = torch.minimum(torch.maximum(torch.floor(lo * scale) + 1, zero), top)
    last = torch.minimum(torch.maximum(torch.ceil(hi * scale) - 1, zero), top)
    centre = torch.minimum(
        torch.maximum(torch.floor((lo * 0.5 + hi * 0.5) * scale + 0.5), zero), top
    )
    inverted = first > last
    first = torch.where(inverted, centre, first).to(torch.int64)
    last = torch.where(inverted, centre, last).to(torch.int64)
    return first, last + 1


def _bins(start: Tensor, end: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """:func:`sppnet.ops._bins.exact_bins` with non-negative divisions only: [K] -> [K, n]."""
    length = (end - start).unsqueeze(1)
    i = torch.arange(n, dtype=torch.int64).unsqueeze(0)
    bin_start = start.unsqueeze(1) + torch.div(i * length, n, rounding_mode="floor")
    bin_end = start.unsqueeze(1) + torch.div((i + 1) * length + (n - 1), n, rounding_mode="floor")
    return bin_start, bin_end


def _floor_log2(length: Tensor, levels: int) -> Tensor:
    """``floor(log2(length))`` for ``1 <= length < 2**levels``, as a sum of comparisons."""
    k = torch.zeros_like(length)
    for j in range(1, levels):
        k = k + (length >= 2**j).to(torch.int64)
    return k


def _shifted_max(table: Tensor, shift: int, dim: int) -> Tensor:
    """``max(t[i], t[i + shift])`` along ``dim`` of a [H, W, C] table, -inf past the end."""
    pad = [0, 0, 0, shift] if dim == 1 else [0, 0, 0, 0, 0, shift]
    padded = F.pad(table, pad, value=float("-inf"))
    later = padded[:, shift:] if dim == 1 else padded[shift:]
    return torch.maximum(table, later)


class GatherRoISPP(nn.Module):
    """``sppnet.ops.roi_spp(..., mapping="paper")`` for one image, from gathers (exportable).

    Args:
        levels: pyramid levels, e.g. ``(6, 3, 2, 1)``.
        spatial_scale: feature cells per input pixel (1 / stride).
        mode: ``"max"`` or ``"avg"``.
        table_levels: ``L``; maps with a side of ``2**L`` cells or more give wrong maxima (max
            mode only; avg has no limit).

    ``forward(features, boxes)``: features Tensor[1, C, H, W] float32, boxes Tensor[K, 4] xyxy in
    the pixels of the image the map was computed from (float32, converted to float64 for the
    mapping as the op does). Returns Tensor[K, C * sum(n * n)] in the op's layout (per level:
    channel, bin row, bin column).
    """

    def __init__(
        self, levels: Sequence[int], spatial_scale: float, mode: str = "max", table_levels: int = 8
    ) -> None:
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(f"GatherRoISPP: mode must be 'max' or 'avg', got {mode!r}")
        if table_levels < 1:
            raise ValueError(f"GatherRoISPP: table_levels must be >= 1, got {table_levels}")
        self.levels = tuple(int(n) for n in levels)
        self.spatial_scale = float(spatial_scale)
        self.mode = mode
        self.table_levels = int(table_levels)

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, spatial_scale={self.spatial_scale:g}, mode={self.mode!r}, "
            f"table_levels={self.table_levels}"
        )

    def _max_table(self, cells: Tensor) -> Tensor:
        """[H, W, C] -> [L * L * H * W, C]: block ``(a, b)`` = maxima of ``2**a x 2**b`` windows."""
        along_w = [cells]
        for b in range(1, self.table_levels):
            along_w.append(_shifted_max(along_w[-1], 2 ** (b - 1), dim=1))
        row, blocks = along_w, list(along_w)
        for a in range(1, self.table_levels):
            row = [_shifted_max(t, 2 ** (a - 1), dim=0) for t in row]
            blocks.extend(row)
        return torch.stack(blocks).reshape(-1, cells.shape[-1])

    def forward(self, features: Tensor, boxes: Tensor) -> Tensor:
        shape = torch._shape_as_tensor(features)
        height, width = shape[2], shape[3]
        channels = features.shape[1]
        cells = features[0].permute(1, 2, 0)  # [H, W, C]: a gather moves one C-vector
        coords = boxes.to(torch.float64)
        x0, x1 = _paper_window(coords[:, 0], coords[:, 2], self.spatial_scale, width)
        y0, y1 = _paper_window(coords[:, 1], coords[:, 3], self.spatial_scale, height)
        if self.mode == "max":
            table = self._max_table(cells)
            powers = 2 ** torch.arange(self.table_levels, dtype=torch.int64)
        else:
            integral = F.pad(cells.to(torch.float64).cumsum(0).cumsum(1), (0, 0, 1, 0, 1, 0))
            table = integral.reshape(-1, channels)
        outputs = []
        for n in self.levels:
            r0, r1 = (t.unsqueeze(2) for t in _bins(y0, y1, n))  # [K, n, 1]
            c0, c1 = (t.unsqueeze(1) for t in _bins(x0, x1, n))  # [K, 1, n]
            if self.mode == "max":
                ky, kx = (
                    _floor_log2(r1 - r0, self.table_levels),
                    _floor_log2(c1 - c0, self.table_levels),
                )
                block = (ky * self.table_levels + kx) * height
                rows = (r0, r1 - powers[ky])
                cols = (c0, c1 - powers[kx])
                pooled = None
                for r in rows:
                    for c in cols:
                        value = table[((block + r) * width + c).reshape(-1)]
                        pooled = value if pooled is None else torch.maximum(pooled, value)
            else:
                stride = width + 1

                def corner(r: Tensor, c: Tensor, stride: Tensor = stride) -> Tensor:
                    return table[(r * stride + c).reshape(-1)]

                total = corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)
                area = ((r1 - r0) * (c1 - c0)).reshape(-1, 1).to(torch.float64)
                pooled = (total / area).to(features.dtype)
            # [K * n * n, C] -> [K, C, n, n] -> [K, C * n * n]
            pooled = pooled.reshape(-1, n, n, channels).permute(0, 3, 1, 2)
            outputs.append(pooled.reshape(pooled.shape[0], channels * n * n))
        return torch.cat(outputs, dim=1)
