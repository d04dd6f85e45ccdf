"""Paths of the numba max kernel (sppnet/ops/_numba_max.py) that the random cases of
test_roi_spp_numba.py rarely reach, each against the pure-PyTorch path bit for bit."""

from __future__ import annotations

import pytest
import torch
from test_roi_spp import make_boxes
from test_roi_spp_numba import assert_identical, both_backends

from sppnet.benchmarks.ops import proposals
from sppnet.ops import _numba_max, roi_spp
from sppnet.ops._roi_spp_autograd import _Geometry
from sppnet.ops._roi_spp_numba import Layout, _channel_blocks, _holds_nan, argmax_dtype, bin_edges
from sppnet.ops.roi_spp import boxes_to_rois


@pytest.mark.parametrize(
    ("height", "width", "dtype"), [(181, 181, torch.int16), (1, 2**15, torch.int32)]
)
def test_argmax_dtype_boundary_bit_for_bit(height, width, dtype):
    """int16 while H * W (the empty-bin mark) fits, int32 past it; both give the torch gradient."""
    assert argmax_dtype(height, width) == dtype
    gen = torch.Generator().manual_seed(height)
    x = torch.randn(1, 2, height, width, generator=gen)
    boxes = make_boxes(gen, 20, 1, height, width, 1.0)
    boxes[0, 1:] = torch.tensor([0.0, 0.0, width - 1.0, height - 1.0])  # the whole map
    for mapping in ("paper", "round"):
        (out_t, grad_t), (out_n, grad_n) = both_backends(x, boxes, (3, 1), 1.0, "max", mapping)
        assert_identical(out_n, out_t)
        assert_identical(grad_n, grad_t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [_numba_max.CHANNEL_BLOCK + 5, 2 * _numba_max.CHANNEL_BLOCK])
def test_several_channel_blocks(channels, dtype):
    """C over one block (padded last block, and whole blocks): every block lands in its place."""
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, 9, 12, generator=gen).to(dtype)
    boxes = make_boxes(gen, 25, 1, 9, 12, 16.0)
    for levels in ((6, 3, 2, 1), (4, 2, 1)):
        (out_t, grad_t), (out_n, grad_n) = both_backends(x, boxes, levels, 1 / 16, "max", "paper")
        assert_identical(out_n, out_t)
        assert_identical(grad_n, grad_t)
        no_grad = roi_spp(x, boxes, levels, 1 / 16, backend="numba")  # the values-only path
        assert_identical(no_grad, out_t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_only_path_on_boxes_of_every_size(dtype):
    """Without a gradient no arg-max is tracked: whole-map, one-cell, outside and inverted boxes,
    with and without a NaN in the map (the NaN-aware compares)."""
    x = torch.randn(2, 20, 38, 50, generator=torch.Generator().manual_seed(4)).to(dtype)
    boxes = torch.cat([proposals(60, seed=5), torch.tensor([
        [0, 0.0, 0.0, 799.0, 599.0],      # the whole image
        [1, 300.0, 200.0, 301.0, 201.0],  # under one cell
        [0, -900.0, -900.0, -500.0, -400.0],  # far outside
        [1, 5000.0, 10.0, 6000.0, 20.0],
        [0, 400.0, 300.0, 100.0, 50.0],   # inverted
    ])])  # fmt: skip
    boxes[30:60, 0] = 1
    for nan in (False, True):
        if nan:
            x[0, 3, 10, 10] = x[1, 7, 0, 0] = float("nan")
        for levels in ((6, 3, 2, 1), (4, 2, 1), (5, 2)):
            want = roi_spp(x, boxes, levels, 1 / 16, backend="torch")
            got = roi_spp(x, boxes, levels, 1 / 16, backend="numba")
            assert bool(got.isnan().any()) == nan
            assert_identical(got, want)


def test_nan_gradient_with_merged_levels():
    """One NaN per region in a nested pyramid: the NaN-aware merges send its gradient alike."""
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(1, 3, 20, 20, generator=gen)
    x[0, 1, 5, 5] = float("nan")
    boxes = torch.tensor([[0, 0.0, 0.0, 160.0, 160.0], [0, 40.0, 40.0, 320.0, 320.0]])
    (out_t, grad_t), (out_n, grad_n) = both_backends(x, boxes, (6, 3, 2, 1), 1 / 16, "max", "paper")
    assert bool(out_t.isnan().any())
    assert_identical(out_n, out_t)
    assert_identical(grad_n, grad_t)


def test_no_regions_with_gradient():
    x = torch.randn(1, 300, 5, 6, requires_grad=True)
    out = roi_spp(x, torch.zeros(0, 5), (6, 3, 2, 1), backend="numba")
    assert out.shape == (0, 300 * 50)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_holds_nan_is_exact():
    """The sum shortcut: +Inf and -Inf (a NaN sum) or an overflowing sum hold no NaN."""
    x = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(9))
    assert not _holds_nan(x)
    infs = x.clone()
    infs[0, 1, 2, 3], infs[0, 2, 0, 0] = float("inf"), float("-inf")
    assert bool(infs.sum().isnan()) and not _holds_nan(infs)
    assert not _holds_nan(torch.full((1, 2, 3, 3), 3e38))  # the float32 sum overflows to +Inf
    nan = x.clone()
    nan[0, 3, 4, 5] = float("nan")
    assert _holds_nan(nan) and _holds_nan(nan.double())
    boxes = torch.tensor([[0, 0.0, 0.0, 95.0, 79.0], [0, 16.0, 16.0, 40.0, 60.0]])
    for levels in ((6, 3, 2, 1), (2,)):  # Inf of both signs, no NaN: the plain compares
        want = roi_spp(infs, boxes, levels, 1 / 16, backend="torch")
        assert_identical(roi_spp(infs, boxes, levels, 1 / 16, backend="numba"), want)


@pytest.mark.parametrize(("height", "width"), [(38, 50), (1, 1), (3, 7), (181, 2)])
def test_paper_edges_match_the_torch_helpers(height, width):
    """The numba paper-mapping bins (:func:`_numba_kernels.paper_edges`) are the torch helpers'
    (:class:`_Geometry`) exactly: boxes of every kind, scales off a power of two, levels larger
    than the map, huge coordinates, and the contiguous coordinates of list input."""
    gen = torch.Generator().manual_seed(height * width)
    boxes = make_boxes(gen, 300, 1, height, width, 16.0)
    boxes[:4, 1:] = torch.tensor([
        [-1e30, -1e30, 1e30, 1e30],
        [1e18, 5.0, -1e18, 6.0],
        [7.99, 7.99, 8.0, 8.0],  # one cell edge: floor + 1 > ceil - 1
        [0.0, 0.0, 0.0, 0.0],
    ])  # fmt: skip
    image, coords = boxes_to_rois(boxes, 1, torch.device("cpu"))
    _, list_coords = boxes_to_rois([boxes[:, 1:]], 1, torch.device("cpu"))
    assert not coords.is_contiguous() and list_coords.is_contiguous()
    for levels in ((4, 2, 1), (6, 3, 2, 1), (13, 7, 5, 1), (64,)):
        layout = Layout.of(levels, derive=True)
        for scale in (1 / 16, 0.3, 1.0):
            geometry = _Geometry(image, coords, scale, "paper", height, width)
            per_level = [geometry.bins(int(n), 0, image.shape[0]) for n in layout.lev_n]
            want = [torch.cat([edges[a] for edges in per_level], dim=1) for a in range(4)]
            for c in (coords, list_coords):
                got = bin_edges(image, c, layout, scale, "paper", height, width)
                for g, w in zip(got, want, strict=True):
                    assert g.dtype == torch.int64 and torch.equal(g, w)


@pytest.mark.parametrize("channels", [1, 7, 8, 9, 256, 261, 512])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channel_blocks_tiles_match_the_permuted_copy(channels, dtype):
    """The SIMD-tile copy of a contiguous map into channels-last blocks equals torch's permuted
    copy (the channels_last input's path): partial tiles of cells and channels, padded blocks,
    two images."""
    x = torch.randn(2, channels, 5, 9, generator=torch.Generator().manual_seed(channels))
    x = x.to(dtype)
    got = _channel_blocks(x)
    want = _channel_blocks(x.contiguous(memory_format=torch.channels_last))
    block = min(_numba_max.CHANNEL_BLOCK, channels)
    assert got.shape == want.shape == (-(-channels // block), 2, 5, 9, block)
    assert got.dtype == want.dtype and (got == want).all()
    flat = x.permute(0, 2, 3, 1).numpy()  # [N, H, W, C]
    for blk in range(got.shape[0]):
        part = flat[..., blk * block : (blk + 1) * block]
        assert (got[blk, ..., : part.shape[-1]] == part).all()
        assert (got[blk, ..., part.shape[-1] :] == 0).all()
