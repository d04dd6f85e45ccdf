"""The max-pooling forward kernel of the ``"numba"`` backend (see :mod:`._numba_kernels` for the
shared arguments).

Per region and per block of channels, each bin of the finest level read from the map is scanned
cell by cell in row-major order (rows, then columns: no index arithmetic per cell), the channel
loop innermost and vectorised, the running maximum (and arg-max) updated in place in a scratch
row of ``block`` channels; for a map holding no NaN (and blocks of a multiple of ``LANES``
channels) the running maximum of ``LANES`` channels stays in vector registers instead
(:func:`._numba_scan.scan_max`, stored once per bin). Coarser levels that nest in a finer one are
merged from its bins (values only: the same register scan over the finer bins); the
block is then written, transposed (8 x 8 tiles by SIMD shuffles, :mod:`._numba_transpose`),
straight into its final ``(C, n, n)`` place of the output.

Channel blocks are the outer loop, regions the inner one, so one block of the map (``H * W *
block`` values, about 0.5 MB for a conv5 map and 64 channels) stays in the core's cache while all
of a thread's regions read it, and the scratch rows stay in L1.

Two flags pick the cheapest correct comparison: ``nan_aware`` (the map holds a NaN: NaN must win
over every number, the first NaN among several) and whether ``arg`` has rows (the arg-max is
tracked and written only when the backward pass needs it). Without NaN a cell wins when it is
strictly larger, so ties keep the first cell in row-major order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sppnet.ops._numba_pages import populate_rows
from sppnet.ops._numba_scan import scan_argmax, scan_max
from sppnet.ops._numba_transpose import TILE, transpose8, transpose_rows

_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}

CHANNEL_BLOCK = 256  # channels per block of the map
_PAD = 16  # elements of padding per scratch row
LANES = 128  # channels whose running maximum one register scan holds (scan_max)
POPULATE_ROWS = 16  # output rows faulted in at once, just before they are written
POPULATE_BYTES = 1 << 16  # and at least this many bytes of rows a call (tiny rows: fewer calls)


@njit(**_OPTIONS)
def max_forward(
    lo, hi, xb, image, rs, re, cs, ce, edge, lev_n, lev_bin, lev_src, occ_lev, occ_bin, out, arg,
    nan_aware,
):  # fmt: skip
    """Max-pool every bin of regions ``lo .. hi - 1`` into ``out`` [K, C * B] and, unless ``arg``
    has 0 rows, the arg-max ``h * W + w`` into ``arg`` (same shape, int16 or int32; ``H * W`` for
    an empty bin). ``xb`` is the map in channel blocks, [C / block, N, H, W, block] (C padded)."""
    _, _, height, width, block = xb.shape
    channels = _channels(out, occ_lev, occ_bin, lev_n)
    with_arg = arg.shape[0] > 0
    total = lev_bin[-1] + lev_n[-1] * lev_n[-1]
    # Scratch bins [B', block + pad]: a row stride off a power of two spreads the transposed
    # reads of _write_block over the cache sets.
    bv = np.empty((total, block + _PAD), dtype=xb.dtype)
    bi = np.empty((total if with_arg else 0, block + _PAD), dtype=np.int32)
    # Flat views made once (a reshape per bin costs a helper call, a large part of a small bin)
    xflat = xb.reshape(-1)
    bvf = bv.reshape(-1)
    bif = bi.reshape(-1)
    step = max(POPULATE_ROWS, -(-POPULATE_BYTES // max(1, out.shape[1] * out.itemsize)))
    for blk in range(xb.shape[0]):
        x = xb[blk]
        c_lo = blk * block
        cb = min(block, channels - c_lo)
        for k in range(lo, hi):
            if blk == 0 and (k - lo) % step == 0:
                populate_rows(out, k, min(k + step, hi))
                populate_rows(arg, k, min(k + step, hi))
            img = image[k]
            for lv in range(lev_n.shape[0]):
                n = lev_n[lv]
                src = lev_src[lv]
                e = edge[lv]
                for i in range(n):
                    for j in range(n):
                        b = lev_bin[lv] + i * n + j
                        if src >= 0:
                            m = lev_n[src]
                            f = m // n
                            first = lev_bin[src] + f * i * m + f * j
                            _merge(bv, bvf, bi, b, first, f, m, block, with_arg, nan_aware)
                            continue
                        r0, r1 = rs[k, e + i], re[k, e + i]
                        c0, c1 = cs[k, e + j], ce[k, e + j]
                        if r1 <= r0 or c1 <= c0:
                            bv[b, :block] = 0
                            if with_arg:
                                bi[b, :block] = height * width
                            continue
                        x_at = (blk * xb.shape[1] + img) * height * width * block
                        _scan(x[img], xflat, x_at, bv, bvf, bi, bif, b, r0, r1, c0, c1, with_arg,
                              nan_aware)  # fmt: skip
            _write_block(out, k, bv, bvf, c_lo, cb, channels, lev_n, lev_bin, occ_lev, occ_bin)
            if with_arg:
                _write_block(arg, k, bi, bif, c_lo, cb, channels, lev_n, lev_bin, occ_lev, occ_bin)


@njit(inline="always")
def _channels(out, occ_lev, occ_bin, lev_n):
    """C, from the output's width and the last occurrence's end."""
    last = occ_lev.shape[0] - 1
    n = lev_n[occ_lev[last]]
    return out.shape[1] // (occ_bin[last] + n * n)


@njit(inline="always")
def _scan(x, xflat, x_at, bv, bvf, bi, bif, b, r0, r1, c0, c1, with_arg, nan_aware):
    """Max (and arg-max) over rows ``[r0, r1)`` x columns ``[c0, c1)`` of ``x`` [H, W, block]
    into ``bv[b]`` (``bi[b]``), cells in row-major order. ``xflat``, ``bvf``, ``bif``: flat views
    of the whole map (``x`` starting at ``x_at``), ``bv`` and ``bi``."""
    width = x.shape[1]
    block = x.shape[2]
    if not nan_aware and block % LANES == 0:
        pitch = bv.shape[1]
        at = x_at + (r0 * width + c0) * block
        for l0 in range(0, block, LANES):
            if with_arg:
                scan_argmax(xflat, at + l0, width * block, block, r1 - r0, c1 - c0, bvf,
                            b * pitch + l0, bif, b * pitch + l0, r0 * width + c0, width,
                            LANES)  # fmt: skip
            else:
                scan_max(xflat, at + l0, width * block, block, r1 - r0, c1 - c0, bvf,
                         b * pitch + l0, LANES)  # fmt: skip
        return
    dst = bv[b]
    first = x[r0, c0]
    for ch in range(block):
        dst[ch] = first[ch]
    if with_arg:
        where = bi[b]
        for ch in range(block):
            where[ch] = r0 * width + c0
    for r in range(r0, r1):
        for c in range(c0 + 1 if r == r0 else c0, c1):
            row = x[r, c]
            cell = r * width + c
            if with_arg and nan_aware:
                for ch in range(block):
                    v = row[ch]
                    m = dst[ch]
                    take = (v > m) | ((v != v) & (m == m))
                    dst[ch] = v if take else m
                    where[ch] = cell if take else where[ch]
            elif with_arg:
                for ch in range(block):
                    v = row[ch]
                    m = dst[ch]
                    take = v > m
                    dst[ch] = v if take else m
                    where[ch] = cell if take else where[ch]
            elif nan_aware:
                for ch in range(block):
                    v = row[ch]
                    m = dst[ch]
                    dst[ch] = v if (v > m) | ((v != v) & (m == m)) else m
            else:
                for ch in range(block):
                    v = row[ch]
                    m = dst[ch]
                    dst[ch] = v if v > m else m


@njit(inline="always")
def _merge(bv, bvf, bi, b, first, f, m, block, with_arg, nan_aware):
    """Bin ``b`` of a coarse level from the ``f x f`` bins of level ``m`` from bin ``first``:
    larger wins, NaN beats numbers, ties go to the lower cell index."""
    if not with_arg and not nan_aware and block % LANES == 0:
        pitch = bv.shape[1]
        for l0 in range(0, block, LANES):
            scan_max(bvf, first * pitch + l0, m * pitch, pitch, f, f, bvf, b * pitch + l0, LANES)
        return
    for ch in range(block):
        bv[b, ch] = bv[first, ch]
    if with_arg:
        for ch in range(block):
            bi[b, ch] = bi[first, ch]
    for t in range(1, f * f):
        o = first + t // f * m + t % f
        if with_arg:
            for ch in range(block):
                v = bv[o, ch]
                w = bv[b, ch]
                iv = bi[o, ch]
                iw = bi[b, ch]
                if nan_aware:
                    v_nan = v != v
                    w_nan = w != w
                    take = ((v > w) | v_nan) & (not w_nan)
                    take = take | (((v == w) | (v_nan & w_nan)) & (iv < iw))
                else:
                    take = (v > w) | ((v == w) & (iv < iw))
                bv[b, ch] = v if take else w
                bi[b, ch] = iv if take else iw
        elif nan_aware:
            for ch in range(block):
                v = bv[o, ch]
                w = bv[b, ch]
                bv[b, ch] = v if (v > w) | ((v != v) & (w == w)) else w
        else:
            for ch in range(block):
                v = bv[o, ch]
                w = bv[b, ch]
                bv[b, ch] = v if v > w else w


@njit(inline="always")
def _write_block(out, k, buf, flat, c_lo, cb, channels, lev_n, lev_bin, occ_lev, occ_bin):
    """Channels ``c_lo .. c_lo + cb`` of the scratch bins ``buf`` [B', block] into row ``k`` of
    ``out`` in (C, n, n) blocks, every occurrence of every level. Per 8 channels the output is
    one contiguous run of ``8 * n * n`` values: 8 x 8 tiles of (bins, channels) by SIMD
    shuffles, then the last ``n * n % 8`` bins as one narrower tile (one store of the whole run
    when ``n * n < 8``); only channels past the last 8 go one by one."""
    row = out[k]
    pitch = buf.shape[1]
    for o in range(occ_lev.shape[0]):
        lv = occ_lev[o]
        n2 = lev_n[lv] * lev_n[lv]
        base = lev_bin[lv]
        col = occ_bin[o] * channels + c_lo * n2
        bins8 = n2 - n2 % TILE
        chans8 = cb - cb % TILE
        for c0 in range(0, chans8, TILE):
            for t0 in range(0, bins8, TILE):
                transpose8(row, col + c0 * n2 + t0, n2, flat, (base + t0) * pitch + c0, pitch)
            if bins8 < n2:
                at = col + c0 * n2 + bins8
                _tail(row, at, n2, flat, (base + bins8) * pitch + c0, pitch, n2 - bins8)
        for ch in range(chans8, cb):
            for t in range(n2):
                row[col + ch * n2 + t] = buf[base + t, ch]


@njit(inline="always")
def _tail(dst, at, stride, src, src_at, pitch, rows):
    """``transpose_rows`` for a run-time ``rows`` in 1 .. 7 (packed when ``stride == rows``):
    one branch per value, because the intrinsic takes ``rows`` and ``packed`` as literals."""
    if stride == rows:
        if rows == 1:
            transpose_rows(dst, at, stride, src, src_at, pitch, 1, True)
        elif rows == 2:
            transpose_rows(dst, at, stride, src, src_at, pitch, 2, True)
        elif rows == 3:
            transpose_rows(dst, at, stride, src, src_at, pitch, 3, True)
        elif rows == 4:
            transpose_rows(dst, at, stride, src, src_at, pitch, 4, True)
        elif rows == 5:
            transpose_rows(dst, at, stride, src, src_at, pitch, 5, True)
        elif rows == 6:
            transpose_rows(dst, at, stride, src, src_at, pitch, 6, True)
        else:
            transpose_rows(dst, at, stride, src, src_at, pitch, 7, True)
    elif rows == 1:
        transpose_rows(dst, at, stride, src, src_at, pitch, 1, False)
    elif rows == 2:
        transpose_rows(dst, at, stride, src, src_at, pitch, 2, False)
    elif rows == 3:
        transpose_rows(dst, at, stride, src, src_at, pitch, 3, False)
    elif rows == 4:
        transpose_rows(dst, at, stride, src, src_at, pitch, 4, False)
    elif rows == 5:
        transpose_rows(dst, at, stride, src, src_at, pitch, 5, False)
    elif rows == 6:
        transpose_rows(dst, at, stride, src, src_at, pitch, 6, False)
    else:
        transpose_rows(dst, at, stride, src, src_at, pitch, 7, False)


@njit(**_OPTIONS)
def channel_blocks(x, xb):
    """The map ``x`` [N, C, H * W] (C-contiguous) into ``xb`` [C / block, N, H * W, block]
    (channels-last blocks; channels past C, in a padded last block, set to 0): 8 x 8 tiles by
    SIMD shuffles, the cells and channels past the last whole tile one by one."""
    n_img, channels, cells = x.shape
    blocks, _, _, block = xb.shape
    src = x.reshape(-1)
    dst = xb.reshape(-1)
    cells8 = cells - cells % TILE
    for blk in range(blocks):
        c_lo = blk * block
        cb = min(block, channels - c_lo)
        chans8 = cb - cb % TILE
        for img in range(n_img):
            s0 = (img * channels + c_lo) * cells  # x[img, c_lo, 0]
            d0 = (blk * n_img + img) * cells * block  # xb[blk, img, 0, 0]
            for c0 in range(0, chans8, TILE):
                for p0 in range(0, cells8, TILE):
                    transpose8(dst, d0 + p0 * block + c0, block, src, s0 + c0 * cells + p0, cells)
            for p in range(cells):
                first = chans8 if p < cells8 else 0
                for ch in range(first, cb):
                    dst[d0 + p * block + ch] = src[s0 + ch * cells + p]
                for ch in range(cb, block):
                    dst[d0 + p * block + ch] = 0
