"""Integer bin edges of the pyramid inside each region, for both box mappings.

Every function returns half-open cell ranges ``[start, end)`` as int64 tensors; a bin is empty when
``end <= start`` (only possible with ``mapping="round"``). Nothing here is differentiable: these are
indices.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Box coordinates beyond this many cells are clamped before conversion to int64; any such box lies
# far outside every feature map, so clamping changes no bin.
_COORD_LIMIT = float(2**40)


def paper_window(lo: Tensor, hi: Tensor, spatial_scale: float, size: int) -> tuple[Tensor, Tensor]:
    """One axis of the paper's box-to-cell mapping, as ``[start, end)`` cells of a map of ``size``.

    With ``s = spatial_scale``: first cell ``floor(lo * s) + 1``, last cell ``ceil(hi * s) - 1``,
    both clipped to ``[0, size - 1]``; where first > last both become the centre cell
    ``floor((lo + hi) / 2 * s + 0.5)``, clipped. The window is never empty.

    Args:
        lo, hi: Tensor[K] float64 (or float32 on MPS) box edges in input-image pixels.
        spatial_scale: feature cells per input pixel (1 / stride).
        size: map extent along this axis (W for x, H for y), >= 1.
    """
    top = float(size - 1)
    first = (torch.floor(lo * spatial_scale) + 1).clamp_(0.0, top)
    last = (torch.ceil(hi * spatial_scale) - 1).clamp_(0.0, top)
    centre = torch.floor((lo * 0.5 + hi * 0.5) * spatial_scale + 0.5).clamp_(0.0, top)
    inverted = first > last
    first = torch.where(inverted, centre, first).long()
    last = torch.where(inverted, centre, last).long()
    return first, last + 1


def exact_bins(start: Tensor, end: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Bin ``i`` of ``n`` in ``[start, end)``: ``floor(i*L/n)`` to ``ceil((i+1)*L/n)`` from start.

    ``L = end - start >= 1``; integer arithmetic, so exact. This is the paper's appendix rule and
    ``adaptive_max_pool2d``'s; when ``L < n`` neighbouring bins overlap but none is empty.

    Args:
        start, end: Tensor[K] int64.
        n: bins along this axis.

    Returns:
        ``(bin_start, bin_end)``, each Tensor[K, n] int64.
    """
    length = (end - start).unsqueeze(1)
    i = torch.arange(n, device=start.device, dtype=torch.int64)
    bin_start = start.unsqueeze(1) + torch.div(i * length, n, rounding_mode="floor")
    bin_end = start.unsqueeze(1) - torch.div(-(i + 1) * length, n, rounding_mode="floor")
    return bin_start, bin_end


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds them to even)."""
    whole = torch.trunc(x)
    return whole + torch.sign(x) * ((x - whole).abs() >= 0.5).to(x.dtype)


def round_bins(
    lo: Tensor, hi: Tensor, spatial_scale: float, n: int, size: int
) -> tuple[Tensor, Tensor]:
    """torchvision ``roi_pool``'s bins along one axis, reproduced operation for operation.

    Corners are ``round(x * spatial_scale)`` (half away from zero), the extent
    ``max(end - start + 1, 1)``, the bin size ``extent / n`` and bin ``i`` spans
    ``floor(i * bin_size) .. ceil((i + 1) * bin_size)`` from the start, clipped to ``[0, size]``.
    All floating-point steps run in ``lo.dtype`` (roi_pool's ``T``), so the edges match it bit
    for bit; bins may come out empty.

    Args:
        lo, hi: Tensor[K] box edges in input-image pixels, in the arithmetic dtype.
        spatial_scale: feature cells per input pixel.
        n: bins along this axis.
        size: map extent along this axis.

    Returns:
        ``(bin_start, bin_end)``, each Tensor[K, n] int64, clipped to ``[0, size]``.
    """
    dtype = lo.dtype
    scale = torch.tensor(spatial_scale, dtype=dtype, device=lo.device)
    first = _round_half_away(lo * scale).clamp_(-_COORD_LIMIT, _COORD_LIMIT).long()
    last = _round_half_away(hi * scale).clamp_(-_COORD_LIMIT, _COORD_LIMIT).long()
    extent = (last - first + 1).clamp_(min=1)
    bin_size = (extent.to(dtype) / torch.tensor(n, dtype=dtype, device=lo.device)).unsqueeze(1)
    i = torch.arange(n + 1, device=lo.device).to(dtype)
    bin_start = torch.floor(i[:-1] * bin_size).long() + first.unsqueeze(1)
    bin_end = torch.ceil(i[1:] * bin_size).long() + first.unsqueeze(1)
    return bin_start.clamp_(0, size), bin_end.clamp_(0, size)
