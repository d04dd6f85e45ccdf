"""The register scan of the numba max kernel (sppnet/ops/_numba_scan.py), alone against numpy and
inside roi_spp where it runs (channel blocks of a multiple of LANES, no NaN), on tie-heavy maps,
bit for bit against the torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit
from numba.core.errors import TypingError
from test_roi_spp import make_boxes
from test_roi_spp_numba import assert_identical, both_backends

from sppnet.ops import _numba_max, roi_spp
from sppnet.ops._numba_scan import scan_argmax, scan_max

LANES = 16


@njit
def _max(x, at, row_stride, col_stride, rows, cols, dst, dst_at):
    scan_max(x, at, row_stride, col_stride, rows, cols, dst, dst_at, 16)


@njit
def _argmax(x, at, row_stride, col_stride, rows, cols, dst, dst_at, arg, arg_at, cell0, width):
    scan_argmax(x, at, row_stride, col_stride, rows, cols, dst, dst_at, arg, arg_at, cell0,
                width, 16)  # fmt: skip


def _reference(x, rows, cols):
    """Running max over cells [rows, cols, LANES] in row-major order, ``>`` only: first winner."""
    best = x[0, 0].copy()
    where = np.zeros(LANES, dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            take = x[r, c] > best
            best = np.where(take, x[r, c], best)
            where = np.where(take, r * 100 + c, where)
    return best, where


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 5), (4, 1), (3, 7)])
def test_scan_matches_numpy_on_ties(dtype, rows, cols):
    """Values from {-0.0, 0.0, 1, 2, -Inf, +Inf} (ties everywhere, signed zeros): the same value
    bits as a sequential ``>`` scan, the first maximal cell's index, nothing else written."""
    rng = np.random.default_rng(rows * 10 + cols)
    choices = np.array([-0.0, 0.0, 1.0, 2.0, -np.inf, np.inf], dtype=dtype)
    width, pitch = 9, 3 * LANES  # cells of LANES values, `pitch` apart, rows `width` cells apart
    x = rng.choice(choices, size=(rows + 2) * width * pitch).astype(dtype)
    r0, c0 = 1, 2
    at = (r0 * width + c0) * pitch + 5
    cells = np.lib.stride_tricks.as_strided(
        x[at:], (rows, cols, LANES), (width * pitch * x.itemsize, pitch * x.itemsize, x.itemsize)
    )
    best, where = _reference(cells, rows, cols)
    dst = np.full(LANES + 8, 7, dtype=dtype)
    _max(x, at, width * pitch, pitch, rows, cols, dst, 3)
    assert (dst[:3] == 7).all() and (dst[3 + LANES :] == 7).all()
    np.testing.assert_array_equal(dst[3 : 3 + LANES].view(np.uint8), best.view(np.uint8))
    dst[:] = 7
    arg = np.full(LANES + 4, -1, dtype=np.int32)
    _argmax(x, at, width * pitch, pitch, rows, cols, dst, 3, arg, 2, r0 * 100 + c0, 100)
    np.testing.assert_array_equal(dst[3 : 3 + LANES].view(np.uint8), best.view(np.uint8))
    np.testing.assert_array_equal(arg[2 : 2 + LANES], where + r0 * 100 + c0)
    assert (arg[:2] == -1).all() and (arg[2 + LANES :] == -1).all()


def test_scan_refuses_mixed_dtypes():
    with pytest.raises(TypingError, match="one dtype"):
        _max(np.zeros(64, np.float32), 0, 16, 16, 1, 1, np.zeros(16, np.float64), 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [_numba_max.LANES, 2 * _numba_max.CHANNEL_BLOCK])
def test_register_path_bit_for_bit_on_ties(channels, dtype):
    """Integer-valued post-ReLU maps (ties in most bins), boxes of every size (whole-map ones
    among them): values, and gradients (the arg-max), as the torch path, for nested pyramids
    (register merges) and levels read from the map only."""
    gen = torch.Generator().manual_seed(channels)
    x = torch.randint(-2, 3, (1, channels, 24, 31), generator=gen).to(dtype).relu()
    boxes = make_boxes(gen, 40, 1, 24, 31, 16.0)
    boxes[:10, 1:] = torch.tensor([0.0, 0.0, 31 * 16.0, 24 * 16.0])  # whole map: large bins
    for levels in ((4, 2, 1), (6, 3, 2, 1), (3, 2)):
        (out_t, grad_t), (out_n, grad_n) = both_backends(x, boxes, levels, 1 / 16, "max", "paper")
        assert_identical(out_n, out_t)
        assert_identical(grad_n, grad_t)
        assert_identical(roi_spp(x, boxes, levels, 1 / 16, backend="numba"), out_t)
