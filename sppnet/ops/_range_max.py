"""Maxima over arbitrary rectangles of a feature map from a few gathers each (a 2-D sparse table).

Block ``(a, b)`` of the table holds, for every cell ``(r, c)`` and channel, the maximum of the
``rows[a] x cols[b]`` window whose top-left cell is ``(r, c)``. Along each axis the window sizes
are either the powers of two ``1, 2, 4, ...`` (a rectangle side of length ``e`` is then covered by
the two windows of size ``2**floor(log2 e)`` anchored at its two ends) or every size
``1, 2, 3, ..., m`` (one window of exactly ``e``, anchored at its start). A rectangle's maximum is
thus the maximum of 1, 2 or 4 table rows, whatever its area; exact sizes halve the gathers along
that axis for a bigger table, and the caller picks whichever is cheaper. Building the table is one
elementwise merge of the map per block, once per call. Everything is stored channels-last, as a
matrix of ``rows x C``, so a gather moves one contiguous C-vector.

When a gradient is needed the table must also say *where* each maximum is: the channels-last flat
index ``((n * H + h) * W + w) * C + c`` of its cell. On ties that is the first maximal cell in
row-major order (torchvision's ``roi_pool`` picks the same one), and NaN wins over every number,
so NaN propagates to the output and to its index. Three storages:

- ``"values"``: the maxima only (no gradient needed);
- ``"packed"`` (float32, float16, bfloat16): one int64 key per entry, the value's bits mapped to an
  order-reversing int32 in the high half and the index in the low half, so a plain integer
  *minimum* picks the larger value and, among equal values, the lower index, in one pass;
- ``"pairs"`` (float64, which does not fit in half a key): values plus an index table, merged with
  explicit comparisons.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

_LOW = 2**32 - 1  # mask of a key's low half


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


def _canonical_float32(x: Tensor) -> Tensor:
    """float32 copy with -0.0 made +0.0 and every NaN the positive quiet NaN.

    Equal values must get equal keys: IEEE says -0.0 == +0.0 and their bits differ; x86 makes
    negative NaNs, whose bits would sort below -Inf.
    """
    x = x.to(torch.float32) + 0.0  # -0.0 + 0.0 == +0.0; also always a fresh tensor
    return x.masked_fill_(torch.isnan(x), float("nan"))


def pack_keys(values: Tensor, index: Tensor) -> Tensor:
    """int64 keys whose minimum is the largest float32 value, then the lowest index.

    ``bits ^ ((bits >> 31) & 0x7FFFFFFF)`` maps float32 bits to int32 in the floats' order (a
    positive NaN above +Inf); its bitwise complement reverses that order without overflow.
    ``index`` (0 <= index < 2**31) fills the low half.
    """
    bits = values.view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return ((~ordered).to(torch.int64) << 32) | index


def unpack_index(keys: Tensor) -> Tensor:
    """The cell index held in the low half of :func:`pack_keys`'s keys."""
    return keys & _LOW


def _is_exact(sizes: list[int]) -> bool:
    """Whether window sizes are ``1, 2, 3, ...`` (else they must be ``1, 2, 4, ...``)."""
    if sizes[0] != 1:
        raise ValueError(f"window sizes must start at 1, got {sizes}")
    # [1] and [1, 2] are both: read them as powers of two, which also cover longer sides.
    if all(b == 2 * a for a, b in itertools.pairwise(sizes)):
        return False
    if all(b == a + 1 for a, b in itertools.pairwise(sizes)):
        return True
    raise ValueError(f"window sizes must be 1, 2, 3, ... or 1, 2, 4, ..., got {sizes}")


def _halves(sizes: list[int], index: int) -> tuple[int, int]:
    """Classes of the two disjoint windows, first then second, that make window ``index``."""
    if sizes[index] == 2 * sizes[index - 1]:
        return index - 1, index - 1
    return index - 1, 0


def _anchors(
    start: Tensor, end: Tensor, size_of: Tensor, exact: bool
) -> tuple[Tensor, list[Tensor]]:
    """Window class and start cells covering ``[start, end)`` along one axis (empty -> size 1)."""
    extent = (end - start).clamp(min=1)
    if exact:
        return extent - 1, [start]
    cls = floor_log2(extent, size_of.shape[0] - 1)
    return cls, [start, end.maximum(start + 1) - size_of[cls]]


class Pooled(NamedTuple):
    """Per-rectangle maxima as the table's storage holds them: ``main`` is the values
    (``"values"``, ``"pairs"``) or the packed keys (``"packed"``); ``argmax`` only for pairs."""

    main: Tensor
    argmax: Tensor | None = None


class RangeMaxTable:
    """The sparse table of one batch of feature maps.

    Args:
        x: Tensor[N, H, W, C] (any strides; a channels-last input is read without a copy).
        row_sizes, col_sizes: the window sizes along each axis: ``[1, 2, 4, ...]`` or
            ``[1, 2, 3, ..., m]``, each at most the map's extent; the largest must reach the
            longest rectangle side the caller will ask for.
        with_argmax: also track where each maximum is (for the backward pass).

    Attributes:
        storage: ``"values"``, ``"packed"`` or ``"pairs"`` (see the module docstring).
        table: Tensor[P + 1, C], all blocks one after the other (values, or int64 keys); the last
            row stands for an empty rectangle: value 0, index ``N * H * W * C``.
        argmax: the index twin of ``table`` for ``"pairs"``, else None.
        empty_row: the index of that last row.
    """

    def __init__(
        self, x: Tensor, row_sizes: list[int], col_sizes: list[int], with_argmax: bool = False
    ) -> None:
        n, h, w, c = x.shape
        self.shape = (n, h, w, c)
        self.row_sizes, self.col_sizes = list(row_sizes), list(col_sizes)
        self.exact_rows = _is_exact(self.row_sizes)
        self.exact_cols = _is_exact(self.col_sizes)
        if self.row_sizes[-1] > h or self.col_sizes[-1] > w:
            raise ValueError(
                f"windows {self.row_sizes[-1]}x{self.col_sizes[-1]} exceed a {h}x{w} map"
            )
        self.heights = [h - size + 1 for size in self.row_sizes]
        self.widths = [w - size + 1 for size in self.col_sizes]
        self.bases = []
        rows = 0
        for ha in self.heights:
            self.bases.append([])
            for wb in self.widths:
                self.bases[-1].append(rows)
                rows += n * ha * wb
        self.empty_row = rows
        device = x.device
        self.base = torch.tensor(self.bases, dtype=torch.int64, device=device)
        self.height_of = torch.tensor(self.heights, dtype=torch.int64, device=device)
        self.width_of = torch.tensor(self.widths, dtype=torch.int64, device=device)
        self.row_size_of = torch.tensor(self.row_sizes, dtype=torch.int64, device=device)
        self.col_size_of = torch.tensor(self.col_sizes, dtype=torch.int64, device=device)
        numel = n * h * w * c
        self.argmax: Tensor | None = None
        if not with_argmax:
            self.storage = "values"
            self.table = x.new_empty((rows + 1, c))
            self.table[rows].zero_()
            self._block(self.table, 0, 0).copy_(x)
        elif x.dtype != torch.float64 and numel < 2**31 - 1:
            self.storage = "packed"
            canonical = _canonical_float32(x).reshape(-1)
            canonical = torch.cat([canonical, canonical.new_zeros(1)])  # for empty rectangles
            # Decoding reads values back by index (exact: canonical holds x's own values).
            self.flat_values = canonical.to(x.dtype)
            index = torch.arange(numel + 1, device=device, dtype=torch.int64)
            keys = pack_keys(canonical, index)
            self.table = torch.empty((rows + 1, c), dtype=torch.int64, device=device)
            self.table[rows] = keys[numel]
            self._block(self.table, 0, 0).view(-1).copy_(keys[:numel])
        else:
            self.storage = "pairs"
            index_dtype = torch.int32 if numel < 2**31 - 1 else torch.int64
            self.table = x.new_empty((rows + 1, c))
            self.table[rows].zero_()
            self._block(self.table, 0, 0).copy_(x)
            self.argmax = torch.empty((rows + 1, c), dtype=index_dtype, device=device)
            self.argmax[rows].fill_(numel)
            first = self._block(self.argmax, 0, 0)
            torch.arange(numel, device=device, dtype=index_dtype, out=first.view(-1))
        self._build()

    def _block(self, table: Tensor, a: int, b: int) -> Tensor:
        n, _, _, c = self.shape
        ha, wb = self.heights[a], self.widths[b]
        start = self.bases[a][b]
        return table[start : start + n * ha * wb].view(n, ha, wb, c)

    def _build(self) -> None:
        # Widen single rows left to right, then stack rows top to bottom. Each block merges two
        # disjoint windows, the first one earlier in scan order, so "ties stay with the first"
        # keeps the row-major first maximum (for the vertical merges because both windows span
        # the same columns).
        steps = [(0, b, 2) for b in range(1, len(self.col_sizes))]
        steps += [
            (a, b, 1) for a in range(1, len(self.row_sizes)) for b in range(len(self.col_sizes))
        ]
        for a, b, axis in steps:
            sizes = self.row_sizes if axis == 1 else self.col_sizes
            index = a if axis == 1 else b
            first_class, second_class = _halves(sizes, index)
            shift = sizes[index] - sizes[second_class]
            first_block = (first_class, b) if axis == 1 else (a, first_class)
            second_block = (second_class, b) if axis == 1 else (a, second_class)
            dst = self._block(self.table, a, b)
            length = dst.shape[axis]
            first = self._block(self.table, *first_block).narrow(axis, 0, length)
            second = self._block(self.table, *second_block).narrow(axis, shift, length)
            if self.argmax is not None:
                torch.where(
                    take_later(first, second),
                    self._block(self.argmax, *second_block).narrow(axis, shift, length),
                    self._block(self.argmax, *first_block).narrow(axis, 0, length),
                    out=self._block(self.argmax, a, b),
                )
            self._merge(first, second, out=dst)

    def _merge(self, a: Tensor, b: Tensor, out: Tensor) -> Tensor:
        """Elementwise "maximum" of two stored tensors (the minimum of packed keys)."""
        if self.storage == "packed":
            return torch.minimum(a, b, out=out)
        return torch.maximum(a, b, out=out)

    def corner_rows(
        self,
        image: Tensor,
        row_start: Tensor,
        row_end: Tensor,
        col_start: Tensor,
        col_end: Tensor,
        may_be_empty: bool,
    ) -> list[list[Tensor]]:
        """Table rows of the windows covering each bin ``rows x cols`` of each region.

        Args:
            image: Tensor[K] int64 batch index of each region.
            row_start, row_end: Tensor[K, n] int64, the half-open row range of each bin row.
            col_start, col_end: Tensor[K, m] int64, the same for columns.
            may_be_empty: whether some ranges may be empty; their bins then use the empty row.

        Returns:
            ``corners[j][i]``: Tensor[K * n * m] int64 rows for column anchor ``j`` and row anchor
            ``i`` (one or two of each).
        """
        row_class, row_anchors = _anchors(row_start, row_end, self.row_size_of, self.exact_rows)
        col_class, col_anchors = _anchors(col_start, col_end, self.col_size_of, self.exact_cols)
        block = self.base[row_class.unsqueeze(2), col_class.unsqueeze(1)]
        stride = self.width_of[col_class].unsqueeze(1)
        first_row = image.unsqueeze(1) * self.height_of[row_class]
        row_parts = [(first_row + anchor).unsqueeze(2) * stride for anchor in row_anchors]
        empty = None
        if may_be_empty:
            empty = (row_end <= row_start).unsqueeze(2) | (col_end <= col_start).unsqueeze(1)
        corners = []
        for anchor in col_anchors:
            column = []
            for rows in row_parts:
                index = block + rows + anchor.unsqueeze(1)
                if empty is not None:
                    index.masked_fill_(empty, self.empty_row)
                column.append(index.view(-1))
            corners.append(column)
        return corners

    def query(self, corners: list[list[Tensor]], shape: tuple[int, ...]) -> Pooled:
        """Maximum of each rectangle from the rows of :meth:`corner_rows`.

        ``shape`` is the result's shape without the channel axis, e.g. ``(K, n, m)``.
        """
        full = (*shape, self.shape[3])
        columns = []
        for column in corners:
            # Windows of one column anchor span the same columns: ties stay with the top one.
            best = self.table.index_select(0, column[0]).view(full)
            best_i = None
            if self.argmax is not None:
                best_i = self.argmax.index_select(0, column[0]).view(full)
            for rows in column[1:]:
                other = self.table.index_select(0, rows).view(full)
                if best_i is not None:
                    other_i = self.argmax.index_select(0, rows).view(full)
                    torch.where(take_later(best, other), other_i, best_i, out=best_i)
                self._merge(best, other, out=best)
            columns.append(Pooled(best, best_i))
        best, best_i = columns[0]
        for other, other_i in columns[1:]:
            # Column windows overlap: on ties the lower cell index wins.
            if best_i is not None and other_i is not None:
                later = take_lower_index(best, best_i, other, other_i)
                torch.where(later, other_i, best_i, out=best_i)
            self._merge(best, other, out=best)
        return Pooled(best, best_i)

    def coarsen(self, fine: Pooled, k: int) -> Pooled:
        """Max over ``k x k`` blocks of bins ``fine`` [K, m, m, C] (m = k * n) -> [K, n, n, C].

        Pairwise maxima of strided views: C stays the contiguous axis, so each is one vectorised
        pass. Ties go to the lower cell index, as everywhere in the table.
        """
        regions, m, _, c = fine.main.shape
        n = m // k
        if self.storage == "values":
            # One vectorised kernel: max_pool2d over bins, channels-last (NaN propagates).
            pooled = F.max_pool2d(fine.main.permute(0, 3, 1, 2), k)
            return Pooled(pooled.permute(0, 2, 3, 1))
        blocks = fine.main.view(regions, n, k, n, k, c)
        cells = None if fine.argmax is None else fine.argmax.view(regions, n, k, n, k, c)
        best = blocks[:, :, 0, :, 0].clone()
        best_i = None if cells is None else cells[:, :, 0, :, 0].clone()
        for di in range(k):
            for dj in range(k):
                if di == dj == 0:
                    continue
                other = blocks[:, :, di, :, dj]
                if cells is not None and best_i is not None:
                    other_i = cells[:, :, di, :, dj]
                    later = take_lower_index(best, best_i, other, other_i)
                    torch.where(later, other_i, best_i, out=best_i)
                self._merge(best, other, out=best)
        return Pooled(best, best_i)

    def write(self, pooled: Pooled, out: Tensor, out_argmax: Tensor | None) -> None:
        """Write values into ``out`` and, if given, cell indices into ``out_argmax`` (strided)."""
        if self.storage == "packed":
            index = unpack_index(pooled.main)
            out.copy_(self.flat_values.index_select(0, index.view(-1)).view(index.shape))
            if out_argmax is not None:
                out_argmax.copy_(index)
            return
        out.copy_(pooled.main)
        if out_argmax is not None:
            assert pooled.argmax is not None
            out_argmax.copy_(pooled.argmax)
