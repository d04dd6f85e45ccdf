"""roi_spp against a brute-force reference, torchvision's roi_pool, gradcheck and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from _spp_reference import roi_spp_grad_reference, roi_spp_reference
from hypothesis import given
from hypothesis import strategies as st

import sppnet
from sppnet.ops import RoISpatialPyramidPooling, _roi_spp_autograd, roi_spp

LEVEL_SETS = [(4, 2, 1), (6, 3, 2, 1), (1,), (3,), (5, 3, 1), (2, 2), (1, 4, 2), (7,), (4, 3, 2, 1)]


def make_boxes(
    gen: torch.Generator, k: int, n_img: int, height: int, width: int, stride: float
) -> torch.Tensor:
    """[K, 5] boxes in image pixels, mixing every kind: inside, straddling and outside the map,
    tiny, inverted (x2 < x1) and zero-area."""
    img_w, img_h = width * stride, height * stride
    rows = []
    for _ in range(k):
        kind = int(torch.randint(6, (1,), generator=gen))
        u = torch.rand(4, generator=gen).tolist()
        if kind == 0:  # inside
            x1, x2 = sorted([u[0] * img_w, u[1] * img_w])
            y1, y2 = sorted([u[2] * img_h, u[3] * img_h])
        elif kind == 1:  # straddling an edge
            x1, x2 = -0.5 * img_w + u[0] * img_w, img_w * (0.5 + u[1])
            y1, y2 = -0.3 * img_h * u[2], img_h * (1 + u[3])
        elif kind == 2:  # far outside
            x1 = img_w * (2 + 3 * u[0]) * (1 if u[1] > 0.5 else -1)
            y1 = img_h * (2 + 3 * u[2]) * (1 if u[3] > 0.5 else -1)
            x2, y2 = x1 + 50 * u[1], y1 + 50 * u[3]
        elif kind == 3:  # tiny (under one cell)
            x1, y1 = u[0] * img_w, u[1] * img_h
            x2, y2 = x1 + stride * 0.7 * u[2], y1 + stride * 0.7 * u[3]
        elif kind == 4:  # inverted
            x2, x1 = sorted([u[0] * img_w, u[1] * img_w])
            y2, y1 = sorted([u[2] * img_h, u[3] * img_h])
        else:  # zero area, possibly on a cell boundary
            x1 = x2 = round(u[0] * width) * stride if u[2] > 0.5 else u[0] * img_w
            y1 = y2 = u[1] * img_h
        b = int(torch.randint(n_img, (1,), generator=gen))
        rows.append([b, x1, y1, x2, y2])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)


def random_case(seed: int):
    gen = torch.Generator().manual_seed(seed)
    n_img = int(torch.randint(1, 3, (1,), generator=gen))
    channels = int(torch.randint(1, 4, (1,), generator=gen))
    height = int(torch.randint(1, 14, (1,), generator=gen))
    width = int(torch.randint(1, 14, (1,), generator=gen))
    stride = [16.0, 8.0, 1.0, 3.0][seed % 4]
    x = torch.randn(n_img, channels, height, width, generator=gen, dtype=torch.float64)
    boxes = make_boxes(gen, 12, n_img, height, width, stride)
    levels = LEVEL_SETS[seed % len(LEVEL_SETS)]
    return x, boxes, levels, 1 / stride


@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_reference(seed, mode, mapping):
    x, boxes, levels, scale = random_case(seed)
    got = roi_spp(x, boxes, levels, scale, mode, mapping)
    want = roi_spp_reference(x.numpy(), boxes.numpy(), levels, scale, mode, mapping)
    assert got.shape == want.shape
    if mode == "max":
        np.testing.assert_array_equal(got.numpy(), want)
    else:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("seed", range(4))
def test_gradient_matches_reference(seed, mode, mapping):
    x, boxes, levels, scale = random_case(100 + seed)
    x.requires_grad_(True)
    out = roi_spp(x, boxes, levels, scale, mode, mapping)
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    out.backward(g)
    want = roi_spp_grad_reference(
        x.detach().numpy(), boxes.numpy(), levels, scale, mode, mapping, g.numpy()
    )
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode, mapping, backend):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 2, 7, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    boxes = make_boxes(gen, 8, 2, 7, 9, 8.0)
    levels = (6, 3, 2, 1)
    assert torch.autograd.gradcheck(
        lambda t: roi_spp(t, boxes, levels, 1 / 8, mode, mapping, backend=backend),
        (x,),
        fast_mode=True,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7])
def test_round_single_level_is_roi_pool_bit_for_bit(n, dtype):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(2, 4, 23, 31, generator=gen).to(dtype)
    boxes = make_boxes(gen, 60, 2, 23, 31, 16.0).to(dtype)
    # roi_pool truncates the batch index; make the sizes varied and include whole-map boxes.
    boxes = torch.cat([boxes, torch.tensor([[1, 0, 0, 31 * 16, 23 * 16]], dtype=dtype)])
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    ours = roi_spp(x1, boxes, (n,), 1 / 16, "max", "round")
    theirs = torchvision.ops.roi_pool(x2, boxes, n, 1 / 16)
    assert torch.equal(ours, theirs.flatten(1))
    g = torch.randn(ours.shape, generator=gen).to(dtype)
    ours.backward(g)
    theirs.backward(g.view_as(theirs))
    assert torch.equal(x1.grad, x2.grad)


def test_round_parity_with_ties_relu_map():
    """Post-ReLU maps are full of equal zeros: the arg-max must still be roi_pool's cell."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 17, 19, generator=gen).clamp(min=0).round()
    boxes = make_boxes(gen, 80, 1, 17, 19, 16.0).float()
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    ours = roi_spp(x1, boxes, (5,), 1 / 16, "max", "round")
    theirs = torchvision.ops.roi_pool(x2, boxes, 5, 1 / 16)
    assert torch.equal(ours, theirs.flatten(1))
    g = torch.randn(ours.shape, generator=gen)
    ours.backward(g)
    theirs.backward(g.view_as(theirs))
    assert torch.equal(x1.grad, x2.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 2, 1), (5, 3)])
def test_ties_send_the_gradient_to_the_first_cell_in_row_major_order(levels, dtype):
    """Integer-valued post-ReLU maps tie everywhere; derived levels included."""
    gen = torch.Generator().manual_seed(len(levels))
    x = torch.randn(2, 3, 13, 17, generator=gen).mul(2).round().clamp(min=0).to(dtype)
    boxes = make_boxes(gen, 30, 2, 13, 17, 16.0)
    xg = x.clone().requires_grad_(True)
    out = roi_spp(xg, boxes, levels, 1 / 16)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
    out.backward(g)
    want = roi_spp_grad_reference(
        x.double().numpy(), boxes.numpy(), levels, 1 / 16, "max", "paper", g.double().numpy()
    )
    np.testing.assert_allclose(xg.grad.double().numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_low_precision_dtypes(dtype, mode):
    x, boxes, levels, scale = random_case(5)
    xl = x.to(dtype)
    got = roi_spp(xl, boxes, levels, scale, mode, "paper")
    assert got.dtype == dtype
    want = roi_spp_reference(xl.double().numpy(), boxes.numpy(), levels, scale, mode, "paper")
    if mode == "max":  # max of representable values is exact in any dtype
        np.testing.assert_array_equal(got.double().numpy(), want)
    else:
        tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6}[dtype]
        np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=tol)
    xg = xl.clone().requires_grad_(True)
    roi_spp(xg, boxes, levels, scale, mode, "paper").sum().backward()
    assert xg.grad.dtype == dtype and bool(torch.isfinite(xg.grad).all())


@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_channels_last_matches_contiguous(mode, mapping):
    x, boxes, levels, scale = random_case(9)
    x = x.float()
    xc = x.clone().requires_grad_(True)
    xl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    a = roi_spp(xc, boxes, levels, scale, mode, mapping)
    b = roi_spp(xl, boxes, levels, scale, mode, mapping)
    assert torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    assert torch.equal(xc.grad, xl.grad)
    assert xl.grad.is_contiguous(memory_format=torch.channels_last)


def test_list_of_boxes_equals_tensor_form():
    x, boxes, levels, scale = random_case(2)
    n_img = x.shape[0]
    as_list = [boxes[boxes[:, 0] == i, 1:] for i in range(n_img)]
    order = torch.cat([torch.nonzero(boxes[:, 0] == i).flatten() for i in range(n_img)])
    want = roi_spp(x, boxes[order], levels, scale)
    got = roi_spp(x, as_list, levels, scale)
    assert torch.equal(got, want)
    # Integer boxes and float32 boxes are accepted too.
    ints = torch.tensor([[0, 0, 0, 64, 48]])
    assert torch.equal(roi_spp(x, ints, levels, scale), roi_spp(x, ints.float(), levels, scale))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_zero_boxes(mode):
    x = torch.randn(2, 5, 6, 7, requires_grad=True)
    for boxes in (torch.zeros(0, 5), [], [torch.zeros(0, 4), torch.zeros(0, 4)]):
        out = roi_spp(x, boxes, (4, 2, 1), mode=mode)
        assert out.shape == (0, 5 * 21)
        out.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_nested_levels_equal_each_level_alone():
    """Coarse levels derived from finer bins equal the levels pooled on their own."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(1, 6, 38, 50, generator=gen)
    boxes = make_boxes(gen, 200, 1, 38, 50, 16.0)
    together = roi_spp(x, boxes, (6, 3, 2, 1))
    alone = torch.cat([roi_spp(x, boxes, (n,)) for n in (6, 3, 2, 1)], dim=1)
    assert torch.equal(together, alone)


def test_nan_and_inf_propagate():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, 2, 3] = float("nan")
    x[0, 1, 6, 6] = float("inf")
    x[0, 2, 1, 1] = float("inf")
    x[0, 2, 2, 2] = float("-inf")
    # Whole map; the bottom-right 2x2 cells; the top-left 2x2 cells.
    boxes = torch.tensor(
        [[0, 0, 0, 128, 128], [0, 80, 80, 128, 128], [0, -16, -16, 32, 32]], dtype=torch.float32
    )
    inf, nan = float("inf"), float("nan")
    want = {
        "max": [[nan, inf, inf], [0, inf, 0], [0, 0, inf]],
        "avg": [[nan, inf, nan], [0, inf, 0], [0, 0, inf]],
    }
    for mode in ("max", "avg"):
        out = roi_spp(x, boxes, (1,), 1 / 16, mode).view(3, 3)  # [box, channel]
        torch.testing.assert_close(out, torch.tensor(want[mode]), equal_nan=True)
    xg = x.clone().requires_grad_(True)
    roi_spp(xg, boxes, (2, 1), 1 / 16).sum().backward()
    assert xg.grad[0, 0, 2, 3] > 0  # the NaN cell is the arg-max of every bin holding it


def test_chunked_equals_unchunked(monkeypatch):
    x, boxes, levels, scale = random_case(3)
    x.requires_grad_(True)
    for mode in ("max", "avg"):  # the torch path's chunks (the numba kernels have none)
        want = roi_spp(x, boxes, levels, scale, mode, backend="torch")
        (want_grad,) = torch.autograd.grad(want.sum(), x)
        monkeypatch.setattr(_roi_spp_autograd, "CHUNK_ELEMENTS", 7)  # one region per chunk
        got = roi_spp(x, boxes, levels, scale, mode, backend="torch")
        (got_grad,) = torch.autograd.grad(got.sum(), x)
        monkeypatch.undo()
        assert torch.equal(got, want)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_millions_of_boxes_in_bounded_chunks():
    """1.5 million tiny boxes on a small map: processed in chunks, rows equal an unchunked run."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 12, 15, generator=gen)
    k = 1_500_000
    xy = torch.rand(k, 2, generator=gen) * torch.tensor([15 * 16.0, 12 * 16.0])
    wh = torch.rand(k, 2, generator=gen) * 40
    boxes = torch.cat([torch.zeros(k, 1), xy, xy + wh], dim=1)
    step = _roi_spp_autograd._chunk_size(4, _roi_spp_autograd.make_plan((4, 2, 1), True))
    assert step < k  # several chunks
    out = roi_spp(x, boxes, (4, 2, 1), backend="torch")
    assert out.shape == (k, 4 * 21)
    pick = torch.randint(k, (3000,), generator=gen)
    np.testing.assert_array_equal(out[pick].numpy(), roi_spp(x, boxes[pick], (4, 2, 1)).numpy())
    np.testing.assert_array_equal(roi_spp(x, boxes, (4, 2, 1), backend="numba"), out)
    ref = roi_spp_reference(
        x.numpy(), boxes[pick[:200]].double().numpy(), (4, 2, 1), 1 / 16, "max", "paper"
    )
    np.testing.assert_array_equal(out[pick[:200]].double().numpy(), ref)


def test_module_and_package_exports():
    module = RoISpatialPyramidPooling((6, 3, 2, 1), 1 / 16, "max", "paper")
    assert module.output_size(256) == 12800
    assert "levels=(6, 3, 2, 1)" in repr(module) and "mapping='paper'" in repr(module)
    x, boxes, levels, scale = random_case(1)
    module = RoISpatialPyramidPooling(levels, scale, "avg", "round")
    assert torch.equal(module(x, boxes), roi_spp(x, boxes, levels, scale, "avg", "round"))
    assert sppnet.roi_spp is roi_spp and sppnet.RoISpatialPyramidPooling is RoISpatialPyramidPooling


def test_longest_side_covers_every_paper_bin():
    """The paper mapping's table stops at ceil(size/n)+1 cells; no bin may be longer."""
    from sppnet.ops._bins import exact_bins, paper_window

    for size in range(1, 60):
        lo = torch.arange(-40.0, size * 16 + 40, 7.0, dtype=torch.float64)
        hi = lo.flip(0)
        first, end = paper_window(lo, hi, 1 / 16, size)
        for n in (1, 2, 3, 4, 6):
            plan = _roi_spp_autograd.make_plan((n,), derive=True)
            s, e = exact_bins(first, end, n)
            assert int((e - s).max()) <= _roi_spp_autograd.longest_side(size, plan, exact=True)
            assert int((e - s).min()) >= 1


@pytest.mark.parametrize("cells", [0, 2**25])
@pytest.mark.parametrize("regions", [1, 5000])
def test_every_window_choice_gives_the_same_result(monkeypatch, cells, regions):
    """Powers of two or exact window sizes, per axis: the table layout never changes a value."""
    monkeypatch.setattr(_roi_spp_autograd, "TABLE_CELLS", cells)
    gen = torch.Generator().manual_seed(regions)
    x = torch.randn(2, 3, 19, 23, generator=gen)
    boxes = make_boxes(gen, 40, 2, 19, 23, 16.0)
    rows, cols = _roi_spp_autograd.window_sizes(
        19, 23, _roi_spp_autograd.make_plan((6, 3, 2, 1), True), regions, True, cells // 6
    )
    exact = rows == [1, 2, 3, 4, 5] or cols == [1, 2, 3, 4, 5]
    assert exact == (regions > 1 and cells > 0)  # both layouts get exercised
    for mapping in ("paper", "round"):
        want = roi_spp_reference(x.numpy(), boxes.numpy(), (6, 3, 2, 1), 1 / 16, "max", mapping)
        got = roi_spp(x, boxes, (6, 3, 2, 1), 1 / 16, "max", mapping, backend="torch")
        np.testing.assert_array_equal(got, want)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input": torch.zeros(3, 4, 5)}, ValueError, "input must be 4-D"),
        ({"input": torch.zeros(1, 2, 4, 4, dtype=torch.int64)}, TypeError, "floating"),
        ({"input": torch.zeros(1, 2, 0, 4)}, ValueError, "height and width"),
        ({"boxes": torch.zeros(3, 4)}, ValueError, r"shape \[K, 5\]"),
        ({"boxes": torch.zeros(3, 5, dtype=torch.bool)}, TypeError, "dtype"),
        ({"boxes": [torch.zeros(2, 5)]}, ValueError, r"boxes\[0\] must have shape \[K, 4\]"),
        ({"boxes": [torch.zeros(1, 4)] * 3}, ValueError, "list of 3 tensors"),
        ({"boxes": "boxes"}, TypeError, "boxes must be"),
        ({"boxes": torch.tensor([[2.0, 0, 0, 8, 8]])}, ValueError, r"batch index\) must lie"),
        ({"boxes": torch.tensor([[-1.0, 0, 0, 8, 8]])}, ValueError, r"batch index\) must lie"),
        ({"boxes": torch.tensor([[0.5, 0, 0, 8, 8]])}, ValueError, "whole numbers"),
        ({"boxes": torch.tensor([[0, float("nan"), 0, 8, 8]])}, ValueError, "finite"),
        ({"boxes": [torch.tensor([[0, 0, float("inf"), 8]])]}, ValueError, "finite"),
        ({"levels": ()}, ValueError, "levels must not be empty"),
        ({"levels": (4, 0)}, ValueError, "every level must be >= 1"),
        ({"levels": (2.0,)}, TypeError, "every level must be an int"),
        ({"levels": 4}, TypeError, "levels must be a sequence"),
        ({"mode": "sum"}, ValueError, "mode must be one of"),
        ({"mapping": "align"}, ValueError, "mapping must be one of"),
        ({"spatial_scale": 0.0}, ValueError, "spatial_scale"),
        ({"spatial_scale": -0.5}, ValueError, "spatial_scale"),
        ({"spatial_scale": float("inf")}, ValueError, "spatial_scale"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    args = {
        "input": torch.zeros(2, 3, 6, 6),
        "boxes": torch.tensor([[0.0, 0, 0, 32, 32]]),
        "levels": (2, 1),
        "spatial_scale": 1 / 16,
        "mode": "max",
        "mapping": "paper",
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        roi_spp(**args)


def test_module_validates_arguments():
    with pytest.raises(ValueError, match="RoISpatialPyramidPooling: mode"):
        RoISpatialPyramidPooling(mode="median")
    with pytest.raises(ValueError, match="RoISpatialPyramidPooling: spatial_scale"):
        RoISpatialPyramidPooling(spatial_scale=0)


# --- properties --------------------------------------------------------------------------------

levels_st = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)


@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    levels=levels_st,
    mapping=st.sampled_from(["paper", "round"]),
    data=st.data(),
)
def test_property_fixed_length_and_constant_map(h, w, levels, mapping, data):
    value = data.draw(st.floats(-1e3, 1e3, allow_nan=False))
    x = torch.full((1, 2, h, w), value, dtype=torch.float64)
    coords = data.draw(st.lists(st.floats(-2000, 2000), min_size=4, max_size=4))
    boxes = torch.tensor([[0.0, *coords]], dtype=torch.float64)
    out = roi_spp(x, boxes, levels, 1 / 16, "max", mapping)
    assert out.shape == (1, 2 * sum(n * n for n in levels))
    if mapping == "paper":  # no bin is ever empty
        assert bool((out == value).all())
    else:  # an empty roi_pool bin gives 0
        assert bool(((out == value) | (out == 0)).all())


@given(seed=st.integers(0, 2**16), mode=st.sampled_from(["max", "avg"]))
def test_property_permuting_boxes_permutes_rows(seed, mode):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 7, 9, generator=gen)
    boxes = make_boxes(gen, 10, 2, 7, 9, 16.0)
    perm = torch.randperm(10, generator=gen)
    out = roi_spp(x, boxes, (3, 1), mode=mode)
    assert torch.equal(roi_spp(x, boxes[perm], (3, 1), mode=mode), out[perm])
