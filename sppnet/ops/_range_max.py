"""Maxima over arbitrary rectangles of a feature map, four gathers per rectangle (2-D sparse table).

Block ``(a, b)`` of the table holds, for every cell ``(r, c)`` and channel, the maximum of the
``2**a x 2**b`` window whose top-left cell is ``(r, c)``. Any rectangle of height ``h`` and width
``w`` is the union of the four (overlapping) windows of block ``(floor(log2 h), floor(log2 w))``
anchored at its corners, so its maximum is the maximum of four table rows. Building the table
reads the map ``O(log H * log W)`` times, once per call; each rectangle then costs four gathers of a
contiguous C-vector, whatever its area.

Everything is stored channels-last, as a matrix of ``rows x C``, so a gather is one contiguous
C-vector per rectangle corner. With ``with_argmax`` a twin int table holds, for each entry, the
channels-last flat index ``((n * H + h) * W + w) * C + c`` of the cell that holds the maximum;
on ties it is the first such cell in row-major order (as torchvision's ``roi_pool`` picks it),
and a NaN wins over every number, so NaN propagates to the output and its index.
"""

from __future__ import annotations

import torch
from torch import Tensor


def floor_log2(x: Tensor, limit: int) -> Tensor:
    """Exact ``floor(log2(x))`` of an int64 tensor with ``x >= 1``, for results up to ``limit``."""
    powers = 2 ** torch.arange(limit + 1, device=x.device, dtype=torch.int64)
    return torch.bucketize(x, powers, right=True) - 1


def take_later(va: Tensor, vb: Tensor) -> Tensor:
    """Where the later window ``b`` wins over ``a``: larger, or NaN. Ties stay with ``a``."""
    return (vb > va) | torch.isnan(vb)


def take_lower_index(va: Tensor, ia: Tensor, vb: Tensor, ib: Tensor) -> Tensor:
    """Where ``b`` wins over ``a``: larger, NaN, or equal with a smaller cell index."""
    return (vb > va) | torch.isnan(vb) | ((vb == va) & (ib < ia))


class RangeMaxTable:
    """The sparse table of one batch of feature maps.

    Args:
        x: Tensor[N, H, W, C] (any strides; a channels-last input is used without a copy).
        max_log_h, max_log_w: largest ``a`` and ``b`` needed (``2**a <= H``); smaller bounds make
            a smaller table when every rectangle is known to be small.
        with_argmax: also build the index table (needed only for the backward pass).

    Attributes:
        values: Tensor[P + 1, C], all blocks one after the other; the last row is zeros and
            stands for an empty rectangle.
        argmax: Tensor[P + 1, C] int32 (int64 when the map has 2**31 or more elements), or None;
            the last row is ``N * H * W * C``, one past the end of the map.
        empty_row: the index of that last row.
    """

    def __init__(
        self, x: Tensor, max_log_h: int, max_log_w: int, with_argmax: bool = False
    ) -> None:
        n, h, w, c = x.shape
        self.shape = (n, h, w, c)
        self.heights = [h - 2**a + 1 for a in range(max_log_h + 1)]
        self.widths = [w - 2**b + 1 for b in range(max_log_w + 1)]
        if self.heights[-1] < 1 or self.widths[-1] < 1:
            raise ValueError(f"table depth ({max_log_h}, {max_log_w}) too deep for a {h}x{w} map")
        bases = []
        rows = 0
        for ha in self.heights:
            bases.append([])
            for wb in self.widths:
                bases[-1].append(rows)
                rows += n * ha * wb
        self.empty_row = rows
        device = x.device
        self.base = torch.tensor(bases, dtype=torch.int64, device=device)
        self.height_of = torch.tensor(self.heights, dtype=torch.int64, device=device)
        self.width_of = torch.tensor(self.widths, dtype=torch.int64, device=device)
        self.values = x.new_empty((rows + 1, c))
        self.values[rows].zero_()
        self.argmax: Tensor | None = None
        numel = n * h * w * c
        if with_argmax:
            index_dtype = torch.int32 if numel < 2**31 - 1 else torch.int64
            self.argmax = torch.empty((rows + 1, c), dtype=index_dtype, device=device)
            self.argmax[rows].fill_(numel)
        self._build(x, bases)

    def _block(self, table: Tensor, bases: list[list[int]], a: int, b: int) -> Tensor:
        n, _, _, c = self.shape
        ha, wb = self.heights[a], self.widths[b]
        start = bases[a][b]
        return table[start : start + n * ha * wb].view(n, ha, wb, c)

    def _build(self, x: Tensor, bases: list[list[int]]) -> None:
        vals, args = self.values, self.argmax
        self._block(vals, bases, 0, 0).copy_(x)
        if args is not None:
            n, h, w, c = self.shape
            first = self._block(args, bases, 0, 0)
            torch.arange(n * h * w * c, device=x.device, dtype=args.dtype, out=first.view(-1))
        # Widen single rows left to right, then stack rows top to bottom. Both merge a window with
        # the next one along the scan order, so "ties stay with the first" keeps the row-major
        # first maximum (for the vertical merges because the windows span the same columns).
        steps = [(0, b, 0, b - 1, 2) for b in range(1, len(self.widths))]
        steps += [
            (a, b, a - 1, b, 1)
            for a in range(1, len(self.heights))
            for b in range(len(self.widths))
        ]
        for a, b, src_a, src_b, axis in steps:
            src = self._block(vals, bases, src_a, src_b)
            dst = self._block(vals, bases, a, b)
            shift = 2 ** (src_a if axis == 1 else src_b)
            length = dst.shape[axis]
            first = src.narrow(axis, 0, length)
            second = src.narrow(axis, shift, length)
            if args is not None:
                src_i = self._block(args, bases, src_a, src_b)
                later = take_later(first, second)
                torch.where(
                    later,
                    src_i.narrow(axis, shift, length),
                    src_i.narrow(axis, 0, length),
                    out=self._block(args, bases, a, b),
                )
            torch.maximum(first, second, out=dst)

    def corner_rows(
        self,
        image: Tensor,
        row_start: Tensor,
        row_end: Tensor,
        col_start: Tensor,
        col_end: Tensor,
        may_be_empty: bool,
    ) -> list[Tensor]:
        """Table rows of the four windows covering each bin ``rows x cols`` of each region.

        Args:
            image: Tensor[K] int64 batch index of each region.
            row_start, row_end: Tensor[K, n] int64, the half-open row range of each bin row.
            col_start, col_end: Tensor[K, m] int64, the same for columns.
            may_be_empty: whether some ranges may be empty; their bins then point at the zero row.

        Returns:
            Four Tensor[K * n * m] int64 (top-left, bottom-left, top-right, bottom-right).
        """
        height = (row_end - row_start).clamp(min=1)
        width = (col_end - col_start).clamp(min=1)
        log_h = floor_log2(height, len(self.heights) - 1)
        log_w = floor_log2(width, len(self.widths) - 1)
        rows_top = image.unsqueeze(1) * self.height_of[log_h] + row_start
        rows_bottom = rows_top + height - 2**log_h
        block = self.base[log_h.unsqueeze(2), log_w.unsqueeze(1)]
        stride = self.width_of[log_w].unsqueeze(1)
        cols_left = col_start.unsqueeze(1)
        cols_right = (col_end - 2**log_w).unsqueeze(1)
        corners = []
        for cols in (cols_left, cols_right):
            for rows in (rows_top, rows_bottom):
                corners.append(block + rows.unsqueeze(2) * stride + cols)
        if may_be_empty:
            empty = (row_end <= row_start).unsqueeze(2) | (col_end <= col_start).unsqueeze(1)
            for index in corners:
                index.masked_fill_(empty, self.empty_row)
        return [index.view(-1) for index in corners]

    def rect_max(
        self,
        corners: list[Tensor],
        shape: tuple[int, ...],
        out: Tensor | None = None,
        out_argmax: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Maximum (and its index, if the table has them) of each rectangle.

        Args:
            corners: the four row tensors of :meth:`corner_rows`.
            shape: the shape of the result without the channel axis, e.g. ``(K, n, m)``.
            out, out_argmax: optional destinations of shape ``(*shape, C)`` (any strides).

        Returns:
            ``(values, argmax)`` of shape ``(*shape, C)``; argmax is None without the index table.
        """
        c = self.shape[3]
        full = (*shape, c)
        top_left, bottom_left, top_right, bottom_right = (
            self.values.index_select(0, index).view(full) for index in corners
        )
        if self.argmax is None:
            left = torch.maximum(top_left, bottom_left, out=top_left)
            right = torch.maximum(top_right, bottom_right, out=top_right)
            return torch.maximum(left, right, out=out), None
        i_tl, i_bl, i_tr, i_br = (
            self.argmax.index_select(0, index).view(full) for index in corners
        )
        # Top and bottom windows span the same columns: ties stay with the top one.
        left_i = torch.where(take_later(top_left, bottom_left), i_bl, i_tl, out=i_tl)
        left = torch.maximum(top_left, bottom_left, out=top_left)
        right_i = torch.where(take_later(top_right, bottom_right), i_br, i_tr, out=i_tr)
        right = torch.maximum(top_right, bottom_right, out=top_right)
        # Left and right windows overlap in columns: on ties the lower cell index wins.
        later = take_lower_index(left, left_i, right, right_i)
        arg = torch.where(later, right_i, left_i, out=out_argmax)
        return torch.maximum(left, right, out=out), arg
