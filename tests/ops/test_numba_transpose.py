"""The 8 x 8 SIMD transposed copy of the numba max kernel (sppnet/ops/_numba_transpose.py), alone
against numpy and inside roi_spp at channel counts and level sizes that leave partial tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit
from numba.core.errors import TypingError
from test_roi_spp import make_boxes
from test_roi_spp_numba import assert_identical, both_backends

from sppnet.ops import roi_spp
from sppnet.ops._numba_max import _tail
from sppnet.ops._numba_transpose import transpose8


@njit
def _copy(dst, dst_at, dst_stride, src, src_at, src_stride):
    transpose8(dst, dst_at, dst_stride, src, src_at, src_stride)


@pytest.mark.parametrize(
    ("src_dtype", "dst_dtype"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int32, np.int16),
        (np.int32, np.int32),
    ],
)
def test_transpose8_matches_numpy(src_dtype, dst_dtype):
    """Offsets and strides off any alignment; everything outside the tile is left alone."""
    rng = np.random.default_rng(0)
    src = rng.integers(-30000, 30000, size=8 * 13 + 5).astype(src_dtype)
    dst = np.full(8 * 11 + 7, -1, dtype=dst_dtype)
    _copy(dst, 3, 11, src, 5, 13)
    want = np.full_like(dst, -1)
    tile = src[5 : 5 + 8 * 13].reshape(8, 13)[:, :8]  # [t, c]
    for c in range(8):
        want[3 + c * 11 : 3 + c * 11 + 8] = tile[:, c]
    np.testing.assert_array_equal(dst, want)


@njit
def _copy_rows(dst, dst_at, dst_stride, src, src_at, src_stride, rows):
    _tail(dst, dst_at, dst_stride, src, src_at, src_stride, rows)


@pytest.mark.parametrize(
    ("src_dtype", "dst_dtype"),
    [(np.float32, np.float32), (np.float64, np.float64), (np.int32, np.int16)],
)
@pytest.mark.parametrize("rows", range(1, 8))
@pytest.mark.parametrize("packed", [False, True])
def test_transpose_rows_matches_numpy(src_dtype, dst_dtype, rows, packed):
    """The narrower tiles of the max kernel's write (``_tail`` -> ``transpose_rows``): ``rows``
    source rows of 8 into 8 columns of ``rows`` at a stride (or one packed run when the stride is
    ``rows``); everything outside them is left alone."""
    rng = np.random.default_rng(rows)
    src = rng.integers(-30000, 30000, size=8 * 13 + 5).astype(src_dtype)
    stride = rows if packed else rows + 4
    dst = np.full(8 * stride + 9, -1, dtype=dst_dtype)
    _copy_rows(dst, 3, stride, src, 5, 13, rows)
    want = np.full_like(dst, -1)
    tile = src[5 : 5 + 8 * 13].reshape(8, 13)[:rows, :8]  # [t, c]
    for c in range(8):
        want[3 + c * stride : 3 + c * stride + rows] = tile[:, c]
    np.testing.assert_array_equal(dst, want)


def test_transpose8_refuses_a_widening_copy():
    with pytest.raises(TypingError, match="cannot copy"):
        _copy(np.zeros(64, np.int32), 0, 8, np.zeros(64, np.int16), 0, 8)


@pytest.mark.parametrize("channels", [1, 7, 8, 9, 16, 23])
def test_partial_tiles_bit_for_bit(channels):
    """Channel counts around the tile width and levels of 1 to 64 bins (whole tiles, narrower
    tiles after them, packed runs below 8 bins), repeated levels, values only and with the
    gradient (the int16 arg-max), float32 and float64."""
    gen = torch.Generator().manual_seed(channels)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(1, channels, 17, 23, generator=gen).to(dtype)
        boxes = make_boxes(gen, 30, 1, 17, 23, 16.0)
        for levels in ((6, 3, 2, 1), (7, 5), (3, 1), (4, 2, 1), (2, 2, 1, 1), (5, 1), (8, 4)):
            (out_t, grad_t), (out_n, grad_n) = both_backends(
                x, boxes, levels, 1 / 16, "max", "paper"
            )
            assert_identical(out_n, out_t)
            assert_identical(grad_n, grad_t)
            assert_identical(roi_spp(x, boxes, levels, 1 / 16, backend="numba"), out_t)
