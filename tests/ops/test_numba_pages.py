"""Prefaulting the numba max kernel's output (sppnet/ops/_numba_pages.py): contents never change,
only the named rows' whole pages inside the array are faulted in, and the kernel's output is the
same under every page policy."""

from __future__ import annotations

import mmap
import sys

import numpy as np
import pytest
import torch
from numba import njit
from test_roi_spp_numba import assert_identical

from sppnet.benchmarks.ops import proposals
from sppnet.ops import roi_spp
from sppnet.ops._numba_pages import PAGE, _resident, populate_rows

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise/mincore")


@njit
def _populate(arr, lo, hi):
    populate_rows(arr, lo, hi)


@njit
def _is_resident(arr, offset):
    return _resident(arr.ctypes.data + offset)


def _fresh(pages: int) -> tuple[mmap.mmap, np.ndarray]:
    """A private anonymous mapping of ``pages`` pages, none faulted in yet."""
    buf = mmap.mmap(-1, pages * PAGE)
    return buf, np.frombuffer(buf, dtype=np.float32)


@linux_only
def test_populates_only_the_rows_whole_pages():
    buf, flat = _fresh(16)
    base = PAGE // 4  # floats per page
    arr = flat[base // 2 :].reshape(-1, base // 4)[:50]  # starts mid-page; rows of 1/4 page
    assert not any(_is_resident(flat, p * PAGE) for p in range(16))
    _populate(arr, 7, 13)  # bytes [2.25, 3.75) pages into the mapping: its pages 2 and 3
    resident = [bool(_is_resident(flat, p * PAGE)) for p in range(16)]
    assert resident == [p in (2, 3) for p in range(16)]
    _populate(arr, 0, 50)  # pages 1..12; page 0 and 13 reach outside arr: left alone
    resident = [bool(_is_resident(flat, p * PAGE)) for p in range(16)]
    assert resident == [1 <= p <= 12 for p in range(16)]
    assert not flat.any()  # faulted-in pages read as zeros
    del arr, flat
    buf.close()


def test_never_changes_contents():
    arr = np.random.default_rng(0).standard_normal((300, 700)).astype(np.float32)
    want = arr.copy()
    for lo, hi in ((0, 300), (5, 17), (299, 300), (40, 40), (50, 10)):
        _populate(arr, lo, hi)
    np.testing.assert_array_equal(arr, want)
    _populate(np.zeros((0, 5), np.int16), 0, 0)  # the empty arg-max placeholder


@pytest.mark.parametrize("pages", ["fresh", "reused"])
def test_kernel_output_under_each_page_state(pages):
    """Fresh outputs (prefaulted a few rows ahead) and outputs reused from the heap (left to the
    writes) give the same values and gradients as the torch path."""
    x = torch.randn(1, 256, 38, 50, generator=torch.Generator().manual_seed(3))
    boxes = proposals(700, seed=2)  # rows of 21 KiB: several prefaulted ranges per thread
    want = roi_spp(x, boxes, (4, 2, 1), backend="torch")
    if pages == "reused":  # a freed output-sized block for the allocator to hand back
        torch.empty(want.shape).fill_(-7.0)
    got = roi_spp(x, boxes, (4, 2, 1), backend="numba")
    assert_identical(got, want)
    leaf = x.clone().requires_grad_(True)
    roi_spp(leaf, boxes, (6, 3, 2, 1), backend="numba").sum().backward()
    ref = x.clone().requires_grad_(True)
    roi_spp(ref, boxes, (6, 3, 2, 1), backend="torch").sum().backward()
    assert_identical(leaf.grad, ref.grad)
