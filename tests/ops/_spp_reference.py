"""Brute-force reference of the SPP op, written plainly: Python loops over regions, bins and cells.

Independent of the implementation on purpose: scalar ``math`` for the paper mapping, numpy scalars
of the input's dtype for roi_pool's mapping, and explicit loops everywhere.
"""

from __future__ import annotations

import math

import numpy as np


def paper_window(lo: float, hi: float, scale: float, size: int) -> tuple[int, int]:
    """Half-open cell range of one box axis under the paper's mapping."""
    first = min(max(math.floor(lo * scale) + 1, 0), size - 1)
    last = min(max(math.ceil(hi * scale) - 1, 0), size - 1)
    if first > last:
        centre = min(max(math.floor((lo + hi) / 2 * scale + 0.5), 0), size - 1)
        first = last = centre
    return first, last + 1


def exact_bin(start: int, end: int, n: int, i: int) -> tuple[int, int]:
    """Bin ``i`` of ``n`` in ``[start, end)``: floor(i*L/n) .. ceil((i+1)*L/n), in integers."""
    length = end - start
    return start + (i * length) // n, start + -((-(i + 1) * length) // n)


def c_round(v: float) -> int:
    """C's round(): halves away from zero."""
    a = abs(float(v))
    whole = math.floor(a)
    r = whole + (1 if a - whole >= 0.5 else 0)
    return r if v >= 0 else -r


def round_bin(
    lo: float, hi: float, scale: float, n: int, i: int, size: int, dtype: type
) -> tuple[int, int]:
    """Bin ``i`` of ``n`` under torchvision roi_pool's rule, arithmetic in ``dtype``."""
    start = c_round(dtype(lo) * dtype(scale))
    end = c_round(dtype(hi) * dtype(scale))
    extent = max(end - start + 1, 1)
    bin_size = dtype(extent) / dtype(n)
    b0 = math.floor(dtype(i) * bin_size) + start
    b1 = math.ceil(dtype(i + 1) * bin_size) + start
    return min(max(b0, 0), size), min(max(b1, 0), size)


def bins_of_box(
    box: np.ndarray, n: int, scale: float, height: int, width: int, mapping: str, dtype: type
) -> list[tuple[int, int, int, int, int, int]]:
    """``(i, j, row0, row1, col0, col1)`` of each bin of level ``n`` of ``box`` (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    out = []
    for i in range(n):
        for j in range(n):
            if mapping == "paper":
                r0, r1 = exact_bin(*paper_window(y1, y2, scale, height), n, i)
                c0, c1 = exact_bin(*paper_window(x1, x2, scale, width), n, j)
            else:
                r0, r1 = round_bin(y1, y2, scale, n, i, height, dtype)
                c0, c1 = round_bin(x1, x2, scale, n, j, width, dtype)
            out.append((i, j, r0, r1, c0, c1))
    return out


def roi_spp_reference(
    x: np.ndarray,
    rois: np.ndarray,
    levels: tuple[int, ...],
    scale: float,
    mode: str,
    mapping: str,
    dtype: type = np.float64,
) -> np.ndarray:
    """Float64 [K, C * sum(n*n)] from ``x`` [N, C, H, W] and ``rois`` [K, 5] (index, corners).

    ``dtype`` is the arithmetic type of roi_pool's mapping (np.float32 for float32 inputs).
    Max propagates NaN (np.maximum); an empty bin gives 0.
    """
    x = np.asarray(x, dtype=np.float64)
    _, channels, height, width = x.shape
    total = sum(n * n for n in levels)
    out = np.zeros((len(rois), channels * total))
    for k, roi in enumerate(rois):
        b = int(roi[0])
        offset = 0
        for n in levels:
            for i, j, r0, r1, c0, c1 in bins_of_box(
                roi[1:], n, scale, height, width, mapping, dtype
            ):
                value = np.zeros(channels)
                if r1 > r0 and c1 > c0:
                    acc = np.full(channels, -np.inf) if mode == "max" else np.zeros(channels)
                    for r in range(r0, r1):
                        for c in range(c0, c1):
                            if mode == "max":
                                acc = np.maximum(acc, x[b, :, r, c])
                            else:
                                acc = acc + x[b, :, r, c]
                    value = acc if mode == "max" else acc / ((r1 - r0) * (c1 - c0))
                for ch in range(channels):
                    out[k, (offset + ch * n * n) + i * n + j] = value[ch]
            offset += channels * n * n
    return out


def roi_spp_grad_reference(
    x: np.ndarray,
    rois: np.ndarray,
    levels: tuple[int, ...],
    scale: float,
    mode: str,
    mapping: str,
    grad_out: np.ndarray,
    dtype: type = np.float64,
) -> np.ndarray:
    """Gradient w.r.t. ``x`` of ``sum(roi_spp(x) * grad_out)``; max sends it to the first
    maximal cell in row-major order (finite ``x`` only)."""
    x = np.asarray(x, dtype=np.float64)
    _, channels, height, width = x.shape
    grad = np.zeros_like(x)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        offset = 0
        for n in levels:
            for i, j, r0, r1, c0, c1 in bins_of_box(
                roi[1:], n, scale, height, width, mapping, dtype
            ):
                if r1 <= r0 or c1 <= c0:
                    continue
                for ch in range(channels):
                    g = grad_out[k, offset + ch * n * n + i * n + j]
                    if mode == "avg":
                        grad[b, ch, r0:r1, c0:c1] += g / ((r1 - r0) * (c1 - c0))
                        continue
                    best, where = -np.inf, None
                    for r in range(r0, r1):
                        for c in range(c0, c1):
                            if where is None or x[b, ch, r, c] > best:
                                best, where = x[b, ch, r, c], (r, c)
                    grad[b, ch, where[0], where[1]] += g
            offset += channels * n * n
    return grad


def spp_reference(x: np.ndarray, levels: tuple[int, ...], mode: str) -> np.ndarray:
    """Whole-map SPP: each image is one region covering the whole map, bins by the exact rule."""
    x = np.asarray(x, dtype=np.float64)
    n_img, channels, height, width = x.shape
    out = []
    for b in range(n_img):
        row = []
        for n in levels:
            block = np.zeros((channels, n, n))
            for i in range(n):
                r0, r1 = exact_bin(0, height, n, i)
                for j in range(n):
                    c0, c1 = exact_bin(0, width, n, j)
                    cells = x[b, :, r0:r1, c0:c1].reshape(channels, -1)
                    block[:, i, j] = cells.max(1) if mode == "max" else cells.mean(1)
            row.append(block.reshape(-1))
        out.append(np.concatenate(row))
    return np.stack(out)
