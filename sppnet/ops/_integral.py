"""Sums over arbitrary rectangles of a feature map from its integral image (summed-area table).

``S[n, i, j, c] = sum(x[n, :i, :j, c])``, so the sum over rows ``[r0, r1)`` and columns ``[c0, c1)``
is ``S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]``: four gathers of a contiguous C-vector per
rectangle, whatever its area. The table is accumulated in float64 (float32 on MPS) so the
differences of large partial sums stay accurate; the backward pass is the adjoint: four signed
scatters into a zero table, then reverse cumulative sums along both axes.

Differences of partial sums would turn one NaN or Inf into NaN for every rectangle below and to the
right of it, so a map holding non-finite values (checked once per call) is summed with those cells
zeroed, and three more tables count its NaN, +Inf and -Inf cells: a rectangle holding a NaN, or
both infinities, averages to NaN, one holding only +Inf (-Inf) to +Inf (-Inf), as a plain mean
would.
"""

from __future__ import annotations

import torch
from torch import Tensor


class IntegralTable:
    """Summed-area table of a batch of feature maps.

    Args:
        x: Tensor[N, H, W, C] (any strides).
        acc_dtype: accumulation dtype (float64 except on devices without it).

    Attributes:
        values: Tensor[N * (H + 1) * (W + 1), C] of ``acc_dtype``.
    """

    def __init__(self, x: Tensor, acc_dtype: torch.dtype) -> None:
        n, h, w, c = x.shape
        self.shape = (n, h, w, c)
        finite = torch.isfinite(x)
        self.special: list[Tensor] | None = None
        if not bool(finite.all()):
            self.special = [
                self._integrate(torch.isnan(x), acc_dtype),
                self._integrate(torch.isposinf(x), acc_dtype),
                self._integrate(torch.isneginf(x), acc_dtype),
            ]
            x = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
        self.values = self._integrate(x, acc_dtype)

    @staticmethod
    def _integrate(x: Tensor, acc_dtype: torch.dtype) -> Tensor:
        n, h, w, c = x.shape
        table = torch.zeros((n, h + 1, w + 1, c), dtype=acc_dtype, device=x.device)
        table[:, 1:, 1:] = x.to(acc_dtype).cumsum(1).cumsum(2)
        return table.view(-1, c)

    @classmethod
    def shape_only(cls, shape: tuple[int, int, int, int]) -> IntegralTable:
        """A table without values, for the index arithmetic of the backward pass."""
        table = cls.__new__(cls)
        table.shape = shape
        return table

    def corner_rows(
        self, image: Tensor, row_start: Tensor, row_end: Tensor, col_start: Tensor, col_end: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        """Table rows of the four corners of each bin and the bin's cell count.

        Args:
            image: Tensor[K] int64 batch index.
            row_start, row_end: Tensor[K, n] int64 half-open row ranges (empty ones allowed).
            col_start, col_end: Tensor[K, m] int64 half-open column ranges.

        Returns:
            ``([r1c1, r0c1, r1c0, r0c0], count)``: four Tensor[K * n * m] int64 and the cell
            count Tensor[K, n, m] int64 (0 for an empty bin, whose corners then coincide).
        """
        _, h, w, _ = self.shape
        row_end = torch.maximum(row_end, row_start)
        col_end = torch.maximum(col_end, col_start)
        top = (image.unsqueeze(1) * (h + 1) + row_start).unsqueeze(2) * (w + 1)
        bottom = (image.unsqueeze(1) * (h + 1) + row_end).unsqueeze(2) * (w + 1)
        left = col_start.unsqueeze(1)
        right = col_end.unsqueeze(1)
        corners = [bottom + right, top + right, bottom + left, top + left]
        count = (row_end - row_start).unsqueeze(2) * (col_end - col_start).unsqueeze(1)
        return [index.reshape(-1) for index in corners], count

    def rect_mean(self, corners: list[Tensor], count: Tensor, out: Tensor) -> Tensor:
        """Mean of each rectangle (0 for an empty one), written into ``out`` [K, n, m, C]."""
        total = self._rect_sum(self.values, corners, count.shape)
        total /= count.clamp(min=1).unsqueeze(3).to(total.dtype)
        if self.special is not None:
            nan, pos, neg = (self._rect_sum(t, corners, count.shape) > 0 for t in self.special)
            total[pos] = float("inf")
            total[neg] = float("-inf")
            total[nan | (pos & neg)] = float("nan")
        return out.copy_(total)

    def _rect_sum(self, table: Tensor, corners: list[Tensor], shape: torch.Size) -> Tensor:
        full = (*shape, self.shape[3])
        total = table.index_select(0, corners[0]).view(full)
        total -= table.index_select(0, corners[1]).view(full)
        total -= table.index_select(0, corners[2]).view(full)
        total += table.index_select(0, corners[3]).view(full)
        return total

    def backward_corners(
        self, grad: Tensor, corners: list[Tensor], count: Tensor, acc: Tensor
    ) -> None:
        """Add the adjoint of :meth:`rect_mean` for ``grad`` [K, n, m, C] into ``acc``."""
        c = self.shape[3]
        share = grad.to(acc.dtype) / count.clamp(min=1).unsqueeze(3).to(acc.dtype)
        share = share.reshape(-1, c)
        acc.index_add_(0, corners[0], share)
        acc.index_add_(0, corners[1], share, alpha=-1)
        acc.index_add_(0, corners[2], share, alpha=-1)
        acc.index_add_(0, corners[3], share)

    def input_grad(self, acc: Tensor) -> Tensor:
        """Gradient w.r.t. ``x`` [N, H, W, C] from the gradient ``acc`` w.r.t. the table."""
        n, h, w, c = self.shape
        table = acc.view(n, h + 1, w + 1, c)
        # dS[i, j] / dx[r, q] = 1 for i > r and j > q: a reverse cumulative sum along both axes.
        grad = table.flip(1, 2).cumsum(1).cumsum(2).flip(1, 2)
        return grad[:, 1:, 1:]
