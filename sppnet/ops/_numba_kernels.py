"""Fused CPU kernels of RoI spatial pyramid pooling, compiled by numba (the ``"numba"`` backend).

The max forward kernel lives in :mod:`sppnet.ops._numba_max`. Every kernel reproduces the pure-
PyTorch path of :mod:`sppnet.ops._roi_spp_autograd` value for value, including the order of
floating-point operations wherever it matters (the integral image of avg pooling, the accumulation
order of both backward passes), so the two backends agree bit for bit. Each kernel takes a range of
regions (or, backward, of channels) and releases the GIL, so the ranges run in parallel on a thread
pool (:mod:`sppnet.ops._roi_spp_numba`; numba's own ``prange`` compiled several times slower and
ran no faster here). The channel loop is innermost, over a channels-last copy of the map, so each
comparison or sum moves a contiguous C-vector.

Shared arguments (all numpy arrays; the caller builds them, see :mod:`sppnet.ops._roi_spp_numba`):

- ``x``: [N, H, W, C] float32/float64, C-contiguous (channels-last).
- ``image``: [K] int64 batch index of each region.
- ``rs, re, cs, ce``: [K, T] int64 half-open bin rows ``[rs, re)`` and columns ``[cs, ce)``; level
  ``l``'s ``n`` row (column) ranges are columns ``edge[l] .. edge[l] + n`` of them. Ranges may be
  empty (roi_pool's mapping only).
- ``lev_n``: [L] int64 the distinct levels; ``lev_bin``: [L] int64 where each level's ``n * n``
  bins start in a region's scratch buffer; ``lev_src``: [L] int64 the level index a max level is
  derived from (a finer multiple, paper mapping only), or -1 to read the map.
- ``occ_lev``, ``occ_bin``: [O] int64, for each level of the output in order, its distinct level
  index and its first bin in the output row (the row holds ``C`` values per bin, level blocks
  ``(C, n, n)`` row-major).

An arg-max is the flat spatial index ``h * W + w`` of the source cell, int32; ``H * W`` marks an
empty bin (no gradient).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_OPTIONS)
def max_backward(ch_lo, ch_hi, grad_out, strides, arg, image, occ_n, occ_bin, grad):
    """Add each output's gradient to its arg-max cell: ``grad`` [N, C, H * W] (zeroed by the
    caller, the input's dtype). The output's gradient ``[k, j]`` is ``grad_out[k * strides[0] +
    j * strides[1]]`` (a flat view of any strided [K, C * B] tensor, expanded ones included).
    Channels ``ch_lo .. ch_hi - 1`` only (channel blocks may run in parallel); the additions follow
    the output's (region, column) order, the order of the PyTorch path's ``index_add_``, and each
    region's block is one contiguous span of ``grad_out``/``arg`` per level."""
    channels, cells = grad.shape[1], grad.shape[2]
    s0, s1 = strides[0], strides[1]
    for k in range(image.shape[0]):
        img = image[k]
        for o in range(occ_n.shape[0]):
            n2 = occ_n[o] * occ_n[o]
            col = occ_bin[o] * channels
            for ch in range(ch_lo, ch_hi):
                for b in range(col + ch * n2, col + (ch + 1) * n2):
                    a = arg[k, b]
                    if a < cells:
                        grad[img, ch, a] += grad_out[k * s0 + b * s1]


@njit(**_OPTIONS)
def integral_tables(x, values, counts):
    """Summed-area tables of ``x`` [N, H, W, C] exactly as the PyTorch path builds them.

    ``values`` [N, H + 1, W + 1, C] float64 (zeroed by the caller) gets ``x`` cumulated along H
    then along W, each a sequential float64 scan (``torch.cumsum``'s order), non-finite cells
    counted as 0. When ``counts`` [3, N, H + 1, W + 1, C] int64 has a first axis of 3 (zeroed) it
    gets the same integrals of the NaN, +Inf and -Inf indicators.
    """
    n_img, height, width, channels = x.shape
    special = counts.shape[0] == 3
    for img in range(n_img):
        for h in range(height):
            for w in range(width):
                for ch in range(channels):
                    v = x[img, h, w, ch]
                    finite = v - v == 0.0
                    values[img, h + 1, w + 1, ch] = values[img, h, w + 1, ch] + (
                        np.float64(v) if finite else 0.0
                    )
                    if special:
                        for t in range(3):
                            hit = (v != v) if t == 0 else (v == np.inf if t == 1 else v == -np.inf)
                            counts[t, img, h + 1, w + 1, ch] = counts[t, img, h, w + 1, ch] + hit
        for h in range(1, height + 1):
            for w in range(1, width + 1):
                for ch in range(channels):
                    values[img, h, w, ch] = values[img, h, w - 1, ch] + values[img, h, w, ch]
                    if special:
                        for t in range(3):
                            counts[t, img, h, w, ch] += counts[t, img, h, w - 1, ch]


@njit(**_OPTIONS)
def avg_forward(lo, hi, values, counts, image, rs, re, cs, ce, edge, lev_n, occ_lev, occ_bin, out):
    """Mean of every bin of regions ``lo .. hi - 1`` from the tables of :func:`integral_tables`
    into ``out`` [K, C * B]:
    ``((S11 - S01) - S10) + S00`` over the cell count in float64 (0 for an empty bin), then a
    bin holding +Inf (-Inf) becomes +Inf (-Inf) and one holding NaN or both infinities NaN."""
    channels = values.shape[3]
    special = counts.shape[0] == 3
    for k in range(lo, hi):
        img = image[k]
        row = out[k]
        for o in range(occ_lev.shape[0]):
            lv = occ_lev[o]
            n = lev_n[lv]
            e = edge[lv]
            col = occ_bin[o] * channels
            for i in range(n):
                r0 = rs[k, e + i]
                r1 = max(re[k, e + i], r0)
                for j in range(n):
                    c0 = cs[k, e + j]
                    c1 = max(ce[k, e + j], c0)
                    denom = np.float64(max((r1 - r0) * (c1 - c0), 1))
                    at = col + i * n + j
                    for ch in range(channels):
                        total = values[img, r1, c1, ch] - values[img, r0, c1, ch]
                        total = total - values[img, r1, c0, ch]
                        total = total + values[img, r0, c0, ch]
                        total = total / denom
                        if special:
                            total = _special(counts, img, r0, r1, c0, c1, ch, total)
                        row[at + ch * n * n] = total


@njit(nogil=True, error_model="numpy")
def _special(counts, img, r0, r1, c0, c1, ch, total):
    """The mean of a bin holding non-finite cells: +-Inf if it holds one sign only, else NaN."""
    nan = _rect_count(counts, 0, img, r0, r1, c0, c1, ch) > 0
    pos = _rect_count(counts, 1, img, r0, r1, c0, c1, ch) > 0
    neg = _rect_count(counts, 2, img, r0, r1, c0, c1, ch) > 0
    if pos:
        total = np.inf
    if neg:
        total = -np.inf
    if nan or (pos and neg):
        total = np.nan
    return total


@njit(nogil=True, error_model="numpy")
def _rect_count(counts, t, img, r0, r1, c0, c1, ch):
    s = counts[t, img, r1, c1, ch] - counts[t, img, r0, c1, ch]
    return s - counts[t, img, r1, c0, ch] + counts[t, img, r0, c0, ch]


@njit(**_OPTIONS)
def avg_backward(
    ch_lo, ch_hi, grad_out, strides, image, rs, re, cs, ce, edge, lev_n, plan_occ, occ_bin, step,
    acc, grad,
):  # fmt: skip
    """The adjoint of :func:`avg_forward` into ``grad`` [N, C, H, W] (the input's dtype);
    ``grad_out`` and ``strides`` as in :func:`max_backward`.

    ``acc`` [C, N, H + 1, W + 1] float64 (zeroed) receives the signed corner scatters in the
    PyTorch path's order: chunks of ``step`` regions, then ``plan_occ`` [P, 2] (distinct level,
    output occurrence) pairs in order (distinct levels finest first, each level's occurrences in
    output order), then the corners ``+S11, -S01, -S10, +S00``, then regions and bins; two
    reverse cumulative sums (along H, then W) turn it into the gradient of the map. Channels
    ``ch_lo .. ch_hi - 1`` only (channel blocks may run in parallel).
    """
    regions = image.shape[0]
    channels = grad.shape[1]
    for lo in range(0, regions, step):
        hi = min(lo + step, regions)
        for p in range(plan_occ.shape[0]):
            lv = plan_occ[p, 0]
            n = lev_n[lv]
            e = edge[lv]
            col = occ_bin[plan_occ[p, 1]] * channels
            for corner in range(4):
                sign = 1.0 if corner == 0 or corner == 3 else -1.0
                for k in range(lo, hi):
                    img = image[k]
                    for ch in range(ch_lo, ch_hi):
                        a = acc[ch, img]
                        at = col + ch * n * n
                        for i in range(n):
                            r0 = rs[k, e + i]
                            r1 = max(re[k, e + i], r0)
                            r = r1 if corner == 0 or corner == 2 else r0
                            for j in range(n):
                                c0 = cs[k, e + j]
                                c1 = max(ce[k, e + j], c0)
                                c = c1 if corner < 2 else c0
                                denom = np.float64(max((r1 - r0) * (c1 - c0), 1))
                                g = grad_out[k * strides[0] + (at + i * n + j) * strides[1]]
                                share = np.float64(g) / denom
                                a[r, c] = a[r, c] + sign * share
    for ch in range(ch_lo, ch_hi):
        _reverse_cumsum_into(acc[ch], grad[:, ch])


@njit(nogil=True, error_model="numpy")
def _reverse_cumsum_into(a, grad):
    """``grad[n] = a[n]`` summed from the bottom-right (rows first, then columns), minus the
    leading row and column: the adjoint of the integral image, [N, H+1, W+1] -> [N, H, W]."""
    n_img, hp1, wp1 = a.shape
    for img in range(n_img):
        for w in range(wp1):
            run = 0.0
            for h in range(hp1 - 1, -1, -1):
                run = run + a[img, h, w]
                a[img, h, w] = run
        for h in range(hp1):
            run = 0.0
            for w in range(wp1 - 1, -1, -1):
                run = run + a[img, h, w]
                a[img, h, w] = run
        for h in range(1, hp1):
            for w in range(1, wp1):
                grad[img, h - 1, w - 1] = a[img, h, w]


@njit(**_OPTIONS)
def paper_edges(coords, scale, height, width, lev_n, edge, rs, re, cs, ce):
    """The paper mapping's bins of every distinct level into ``rs, re, cs, ce`` [K, T], the same
    arithmetic as :func:`sppnet.ops._bins.paper_window` and :func:`~sppnet.ops._bins.exact_bins`
    (float64 products, integer floor divisions), so the same cells. ``coords`` [K, 4] float64
    ``(x1, y1, x2, y2)`` in image pixels."""
    for k in range(coords.shape[0]):
        r0, r1 = _paper_window(coords[k, 1], coords[k, 3], scale, height)
        c0, c1 = _paper_window(coords[k, 0], coords[k, 2], scale, width)
        for lv in range(lev_n.shape[0]):
            n = lev_n[lv]
            e = edge[lv]
            for i in range(n):
                rs[k, e + i] = r0 + i * (r1 - r0) // n
                re[k, e + i] = r0 - (-(i + 1) * (r1 - r0)) // n
                cs[k, e + i] = c0 + i * (c1 - c0) // n
                ce[k, e + i] = c0 - (-(i + 1) * (c1 - c0)) // n


@njit(inline="always")
def _paper_window(lo, hi, scale, size):
    """``[first, last + 1)``: the cells of one axis, as :func:`sppnet.ops._bins.paper_window`."""
    top = float(size - 1)
    first = min(max(np.floor(lo * scale) + 1, 0.0), top)
    last = min(max(np.ceil(hi * scale) - 1, 0.0), top)
    if first > last:
        centre = min(max(np.floor((lo * 0.5 + hi * 0.5) * scale + 0.5), 0.0), top)
        first = centre
        last = centre
    return np.int64(first), np.int64(last) + 1
