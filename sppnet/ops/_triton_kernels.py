"""Triton kernels of RoI spatial pyramid pooling (the ``"triton"`` backend), forward and backward.

The host side (:mod:`sppnet.ops._roi_spp_triton`) computes the bins with the same PyTorch helpers
as the pure-PyTorch path and launches one program per (region, block of channels) and pyramid
level; each program holds all ``n x n`` bins of its level for its channels as one
``[BINS, CBLOCK]`` tile (``BINS`` the next power of two of ``n * n``) and writes it once, straight
into the final ``[K, C * B]`` layout (level blocks ``(C, n, n)`` row-major), at every position
where the level occurs.

Shared arguments:

- ``x_ptr``: the map channels-last ``[N, H, W, C]``, contiguous, the input's dtype.
- ``rs_ptr, re_ptr, cs_ptr, ce_ptr``: ``[K, n]`` int64 half-open bin rows ``[rs, re)`` and
  columns ``[cs, ce)`` of one level (possibly empty with ``mapping="round"``).
- ``occ_ptr``: ``[O]`` int64, the first bin (within a region's row of ``B`` bins) of each
  occurrence of the level in the output.
- Arg-max keys are the channels-last flat index ``((img * H + h) * W + w) * C + c`` of the source
  cell, the torch path's convention; ``sentinel`` (``N * H * W * C``) marks an empty bin.

The backward kernels are gathers: each program owns a range of targets (map cells for max, rows of
the integral image for avg) and adds that target's contributions one after the other in the
order the host sorted them into (a stable sort, so the pure-PyTorch path's ``index_add_`` order).
No atomics: every run gives the same bits.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def max_read_level(
    x_ptr, image_ptr, rs_ptr, re_ptr, cs_ptr, ce_ptr, out_ptr, arg_ptr, occ_ptr,
    regions, n_occ, channels, height, width, out_stride, sentinel,
    N: tl.constexpr, RB: tl.constexpr, BINS: tl.constexpr, CBLOCK: tl.constexpr,
    WRITE_ARG: tl.constexpr, CMP: tl.constexpr,
):  # fmt: skip
    """Max-pool level ``N`` of region ``program_id(0)`` for one block of channels from the map.

    Cells are scanned in row-major order; a later cell wins only if larger, or NaN over a number,
    so ties keep the first maximal cell and the first NaN wins. An empty bin gives 0 and the
    sentinel key.
    """
    row = tl.arange(0, RB * BINS)
    k = tl.program_id(0).to(tl.int64) * RB + row // BINS
    b = row % BINS
    ch = tl.program_id(1) * CBLOCK + tl.arange(0, CBLOCK)
    live_b = (b < N * N) & (k < regions)
    live_c = ch < channels
    i = b // N
    j = b % N
    r0 = tl.load(rs_ptr + k * N + i, mask=live_b, other=0)
    r1 = tl.load(re_ptr + k * N + i, mask=live_b, other=0)
    c0 = tl.load(cs_ptr + k * N + j, mask=live_b, other=0)
    c1 = tl.load(ce_ptr + k * N + j, mask=live_b, other=0)
    cols = tl.maximum(c1 - c0, 0)
    area = tl.maximum(r1 - r0, 0) * cols
    cols = tl.maximum(cols, 1)
    base = tl.load(image_ptr + k, mask=live_b, other=0) * height * width
    filled = area > 0
    cell = r0 * width + c0
    best = tl.load(
        x_ptr + (base + cell)[:, None] * channels + ch[None, :],
        mask=filled[:, None] & live_c[None, :],
        other=0.0,
    ).to(CMP)
    where = tl.broadcast_to(cell[:, None], (RB * BINS, CBLOCK))
    for t in range(1, tl.max(area, axis=0)):
        at = (r0 + t // cols) * width + c0 + t % cols
        live = t < area
        v = tl.load(
            x_ptr + (base + at)[:, None] * channels + ch[None, :],
            mask=live[:, None] & live_c[None, :],
            other=0.0,
        ).to(CMP)
        take = live[:, None] & ((v > best) | ((v != v) & (best == best)))
        best = tl.where(take, v, best)
        where = tl.where(take, at[:, None], where)
    key = tl.where(filled[:, None], (base[:, None] + where) * channels + ch[None, :], sentinel)
    _store_level(out_ptr, arg_ptr, occ_ptr, n_occ, k, ch, b, best, key, live_b, live_c,
                 channels, out_stride, N, WRITE_ARG)  # fmt: skip


@triton.jit
def max_derive_level(
    out_ptr, arg_ptr, occ_ptr, regions, n_occ, src_first, channels, out_stride,
    N: tl.constexpr, M: tl.constexpr, RB: tl.constexpr, BINS: tl.constexpr, CBLOCK: tl.constexpr,
    WRITE_ARG: tl.constexpr, CMP: tl.constexpr,
):  # fmt: skip
    """Level ``N`` from the finer level ``M = F * N`` already written at bin ``src_first`` of
    the output (values) and of ``arg_ptr`` (keys): each coarse bin is exactly the union of its
    ``F x F`` fine bins (the paper's integer bins nest). Larger wins, NaN over numbers, and ties
    (or two NaN) go to the lower key: the coarse bin's first maximal cell in row-major order."""
    F: tl.constexpr = M // N
    row = tl.arange(0, RB * BINS)
    k = tl.program_id(0).to(tl.int64) * RB + row // BINS
    b = row % BINS
    ch = tl.program_id(1) * CBLOCK + tl.arange(0, CBLOCK)
    live_b = (b < N * N) & (k < regions)
    live_c = ch < channels
    mask = live_b[:, None] & live_c[None, :]
    fine0 = (b // N) * F * M + (b % N) * F
    src = (k * out_stride)[:, None] + src_first * channels + ch[None, :] * (M * M)
    best = tl.load(out_ptr + src + fine0[:, None], mask=mask, other=0.0).to(CMP)
    where = tl.load(arg_ptr + src + fine0[:, None], mask=mask, other=0)
    for t in range(1, F * F):
        fine = fine0 + (t // F) * M + t % F
        v = tl.load(out_ptr + src + fine[:, None], mask=mask, other=0.0).to(CMP)
        iv = tl.load(arg_ptr + src + fine[:, None], mask=mask, other=0)
        v_nan = v != v
        best_nan = best != best
        take = (v > best) | (v_nan & ~best_nan)
        take = take | (((v == best) | (v_nan & best_nan)) & (iv < where))
        best = tl.where(take, v, best)
        where = tl.where(take, iv, where)
    _store_level(out_ptr, arg_ptr, occ_ptr, n_occ, k, ch, b, best, where, live_b, live_c,
                 channels, out_stride, N, WRITE_ARG)  # fmt: skip


@triton.jit
def _store_level(
    out_ptr, arg_ptr, occ_ptr, n_occ, k, ch, b, best, key, live_b, live_c, channels, out_stride,
    N: tl.constexpr, WRITE_ARG: tl.constexpr,
):  # fmt: skip
    """Write a level's tile at every occurrence; -0.0 becomes +0.0 (the torch path's keys do not
    tell the two zeros apart, so neither do its outputs)."""
    best = tl.where(best == 0, 0.0, best).to(out_ptr.dtype.element_ty)
    mask = live_b[:, None] & live_c[None, :]
    column = (k * out_stride)[:, None] + ch[None, :] * (N * N) + b[:, None]
    for o in range(n_occ):
        at = tl.load(occ_ptr + o) * channels + column
        tl.store(out_ptr + at, best, mask=mask)
        if WRITE_ARG:
            tl.store(arg_ptr + at, key.to(arg_ptr.dtype.element_ty), mask=mask)


@triton.jit
def avg_level(
    table_ptr, special_ptr, image_ptr, rs_ptr, re_ptr, cs_ptr, ce_ptr, out_ptr, occ_ptr,
    regions, n_occ, channels, height, width, out_stride, special_stride,
    N: tl.constexpr, RB: tl.constexpr, BINS: tl.constexpr, CBLOCK: tl.constexpr,
    HAS_SPECIAL: tl.constexpr,
    BF16: tl.constexpr,
    OUT64: tl.constexpr,
):  # fmt: skip
    """Mean of every bin of level ``N`` from the float64 integral image ``table_ptr``
    ``[N * (H + 1) * (W + 1), C]`` (the torch path's own table): ``((S11 - S01) - S10) + S00``
    over the cell count, in float64, as the torch path. ``special_ptr`` ``[3, rows, C]`` counts
    NaN, +Inf and -Inf cells (when ``HAS_SPECIAL``). Unless the output is float64 (``OUT64``) the
    result is rounded to float32 and then to the output's dtype, as torch's float64 -> 16-bit
    copy does; bfloat16 is rounded here to
    nearest even and stored through an int16 view (``BF16``)."""
    row = tl.arange(0, RB * BINS)
    k = tl.program_id(0).to(tl.int64) * RB + row // BINS
    b = row % BINS
    ch = tl.program_id(1) * CBLOCK + tl.arange(0, CBLOCK)
    live_b = (b < N * N) & (k < regions)
    live_c = ch < channels
    mask = live_b[:, None] & live_c[None, :]
    i = b // N
    j = b % N
    r0 = tl.load(rs_ptr + k * N + i, mask=live_b, other=0)
    r1 = tl.maximum(tl.load(re_ptr + k * N + i, mask=live_b, other=0), r0)
    c0 = tl.load(cs_ptr + k * N + j, mask=live_b, other=0)
    c1 = tl.maximum(tl.load(ce_ptr + k * N + j, mask=live_b, other=0), c0)
    img = tl.load(image_ptr + k, mask=live_b, other=0)
    top = (img * (height + 1) + r0) * (width + 1)
    bottom = (img * (height + 1) + r1) * (width + 1)
    corners = (bottom + c1, top + c1, bottom + c0, top + c0)
    total = _rect_sum(table_ptr, corners, ch, channels, mask)
    count = tl.maximum((r1 - r0) * (c1 - c0), 1).to(tl.float64)
    total = total / count[:, None]
    if HAS_SPECIAL:
        nan = _rect_sum(special_ptr, corners, ch, channels, mask) > 0
        pos = _rect_sum(special_ptr + special_stride, corners, ch, channels, mask) > 0
        neg = _rect_sum(special_ptr + 2 * special_stride, corners, ch, channels, mask) > 0
        total = tl.where(pos, float("inf"), total)
        total = tl.where(neg, float("-inf"), total)
        total = tl.where(nan | (pos & neg), float("nan"), total)
    value = total if OUT64 else total.to(tl.float32)
    if BF16:
        bits = value.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        rounded = tl.where(value != value, 0x7FC0, rounded)
        value = rounded.to(tl.int16)
    column = (k * out_stride)[:, None] + ch[None, :] * (N * N) + b[:, None]
    for o in range(n_occ):
        at = tl.load(occ_ptr + o) * channels + column
        tl.store(out_ptr + at, value.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rect_sum(table_ptr, corners, ch, channels, mask):
    s11, s01, s10, s00 = corners
    total = tl.load(table_ptr + s11[:, None] * channels + ch[None, :], mask=mask, other=0.0)
    total = total - tl.load(table_ptr + s01[:, None] * channels + ch[None, :], mask=mask, other=0.0)
    total = total - tl.load(table_ptr + s10[:, None] * channels + ch[None, :], mask=mask, other=0.0)
    return total + tl.load(table_ptr + s00[:, None] * channels + ch[None, :], mask=mask, other=0.0)


@triton.jit
def max_backward(
    grad_ptr, perm_ptr, lo_ptr, hi_ptr, acc_ptr, targets,
    BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """``acc[t] = sum of grad[perm[s]] for s in [lo[t], hi[t])``, added one by one from 0 in that
    order: each map cell ``t`` (channels-last flat index) sums the output gradients whose arg-max
    it is, in the flat output order (the torch path's ``index_add_`` order). ``grad_ptr`` is the
    flat ``[K * C * B]`` output gradient; float32 sums (float64 for a float64 map)."""
    t = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = t < targets
    lo = tl.load(lo_ptr + t, mask=live, other=0)
    length = tl.load(hi_ptr + t, mask=live, other=0) - lo
    acc = tl.zeros((BLOCK,), dtype=ACC)
    for s in range(0, tl.max(length, axis=0)):
        on = s < length
        source = tl.load(perm_ptr + lo + s, mask=on, other=0)
        g = tl.load(grad_ptr + source, mask=on, other=0.0).to(ACC)
        acc = tl.where(on, acc + g, acc)
    tl.store(acc_ptr + t, acc, mask=live)


@triton.jit
def avg_backward(
    grad_ptr, grad_stride0, grad_stride1, perm_ptr, lo_ptr, hi_ptr, region_ptr, column_ptr,
    square_ptr, count_ptr, sign_ptr, acc_ptr, rows, channels,
    RBLOCK: tl.constexpr, CBLOCK: tl.constexpr,
):  # fmt: skip
    """Rows of the gradient w.r.t. the integral image, ``acc`` ``[rows, C]`` float64: row ``r``
    adds the signed shares ``+-grad / count`` of every bin corner landing on it one by one, in the
    sorted order ``perm[lo[r] .. hi[r]]`` (the torch path's scatter order). Entry ``e`` is the
    output gradient ``grad[region[e], column[e] + c * square[e]]`` (any strides)."""
    r = tl.program_id(0).to(tl.int64) * RBLOCK + tl.arange(0, RBLOCK)
    ch = tl.program_id(1) * CBLOCK + tl.arange(0, CBLOCK)
    live_r = r < rows
    live_c = ch < channels
    lo = tl.load(lo_ptr + r, mask=live_r, other=0)
    length = tl.load(hi_ptr + r, mask=live_r, other=0) - lo
    acc = tl.zeros((RBLOCK, CBLOCK), dtype=tl.float64)
    for s in range(0, tl.max(length, axis=0)):
        on = s < length
        e = tl.load(perm_ptr + lo + s, mask=on, other=0)
        column = tl.load(column_ptr + e, mask=on, other=0)[:, None]
        column = column + ch[None, :] * tl.load(square_ptr + e, mask=on, other=0)[:, None]
        at = tl.load(region_ptr + e, mask=on, other=0)[:, None] * grad_stride0
        mask = on[:, None] & live_c[None, :]
        g = tl.load(grad_ptr + at + column * grad_stride1, mask=mask, other=0.0).to(tl.float64)
        share = g / tl.load(count_ptr + e, mask=on, other=1).to(tl.float64)[:, None]
        plus = tl.load(sign_ptr + e, mask=on, other=1)[:, None] > 0
        acc = tl.where(mask, tl.where(plus, acc + share, acc - share), acc)
    tl.store(
        acc_ptr + r[:, None] * channels + ch[None, :], acc, mask=live_r[:, None] & live_c[None, :]
    )
