"""The numba backend of roi_spp against the pure-PyTorch path: bit for bit, forward and gradient.

The PyTorch path itself is checked against the brute-force reference in test_roi_spp.py; equality
here carries that over to the numba kernels.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from test_roi_spp import make_boxes, random_case

from sppnet.benchmarks.ops import proposals
from sppnet.ops import RoISpatialPyramidPooling, roi_spp
from sppnet.ops._roi_spp_numba import parallel_ranges
from sppnet.ops.roi_spp import resolve_backend

# The module, not the function that sppnet.ops exports under the same name.
roi_spp_module = importlib.import_module("sppnet.ops.roi_spp")


def both_backends(x, boxes, levels, scale, mode, mapping, grad_seed=0, expanded=False):
    """Outputs and input gradients of the torch and the numba backend for the same call."""
    results = []
    for backend in ("torch", "numba"):
        leaf = x.detach().clone().requires_grad_(True)
        out = roi_spp(leaf, boxes, levels, scale, mode, mapping, backend=backend)
        if expanded:
            out.sum().backward()  # an expanded (stride 0) output gradient
        else:
            gen = torch.Generator().manual_seed(grad_seed)
            out.backward(torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype))
        results.append((out.detach(), leaf.grad))
    return results


def assert_identical(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_cases_bit_for_bit(dtype, mode, mapping):
    """Every kind of box, 1-2 images, levels in any order and repeated (LEVEL_SETS)."""
    for seed in range(18):
        x, boxes, levels, scale = random_case(seed)
        (out_t, grad_t), (out_n, grad_n) = both_backends(
            x.to(dtype), boxes, levels, scale, mode, mapping, grad_seed=seed
        )
        assert out_n.dtype == dtype and out_n.shape == out_t.shape
        assert_identical(out_n, out_t)
        assert_identical(grad_n, grad_t)


@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 2, 1), (2, 6, 2)])
def test_detector_sized_map_bit_for_bit(levels, mode, mapping):
    """A conv5-sized map with the benchmark's proposals: long bins, nested levels, many regions."""
    x = torch.randn(2, 8, 38, 50, generator=torch.Generator().manual_seed(1))
    boxes = proposals(120, seed=3)
    boxes[60:, 0] = 1
    (out_t, grad_t), (out_n, grad_n) = both_backends(x, boxes, levels, 1 / 16, mode, mapping)
    assert_identical(out_n, out_t)
    assert_identical(grad_n, grad_t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 2, 1), (5, 3), (1, 2, 4)])
def test_ties_pick_the_same_cell(levels, dtype):
    """Integer-valued post-ReLU maps tie everywhere: same arg-max cells, derived levels included."""
    gen = torch.Generator().manual_seed(len(levels))
    x = torch.randn(2, 3, 13, 17, generator=gen).mul(2).round().clamp(min=0).to(dtype)
    boxes = make_boxes(gen, 40, 2, 13, 17, 16.0)
    for mapping in ("paper", "round"):
        (out_t, grad_t), (out_n, grad_n) = both_backends(x, boxes, levels, 1 / 16, "max", mapping)
        assert_identical(out_n, out_t)
        assert_identical(grad_n, grad_t)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_nan_and_inf_propagate_alike(mode):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 9, 11, generator=gen)
    x[0, 0, 2, 3] = float("nan")
    x[0, 1, 6, 6] = float("inf")
    x[0, 2, 1, 1] = float("inf")
    x[0, 2, 2, 2] = float("-inf")
    x[0, 3, 7, 9] = float("-inf")
    boxes = make_boxes(gen, 30, 1, 9, 11, 16.0)
    for dtype in (torch.float32, torch.float64):
        outs = [
            roi_spp(x.to(dtype), boxes, (4, 2, 1), 1 / 16, mode, backend=backend)
            for backend in ("torch", "numba")
        ]
        assert bool(outs[0].isnan().any()) and bool(outs[0].isinf().any())
        assert_identical(outs[1], outs[0])
    # One NaN per bin at most: its cell gets the gradient on both backends.
    (_, grad_t), (_, grad_n) = both_backends(x, boxes, (4, 2, 1), 1 / 16, mode, "paper")
    assert_identical(grad_n, grad_t)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_expanded_output_gradient(mode):
    """``out.sum().backward()`` hands the backward a stride-0 gradient."""
    x, boxes, levels, scale = random_case(4)
    (out_t, grad_t), (out_n, grad_n) = both_backends(
        x.float(), boxes, levels, scale, mode, "paper", expanded=True
    )
    assert_identical(out_n, out_t)
    assert_identical(grad_n, grad_t)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_no_regions_and_list_input(mode):
    x = torch.randn(2, 5, 6, 7, requires_grad=True)
    for boxes in (torch.zeros(0, 5), [], [torch.zeros(0, 4), torch.zeros(0, 4)]):
        out = roi_spp(x, boxes, (4, 2, 1), mode=mode, backend="numba")
        assert out.shape == (0, 5 * 21)
        out.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
    xs, boxes, levels, scale = random_case(2)
    as_list = [boxes[boxes[:, 0] == i, 1:] for i in range(xs.shape[0])]
    order = torch.cat([torch.nonzero(boxes[:, 0] == i).flatten() for i in range(xs.shape[0])])
    got = roi_spp(xs, as_list, levels, scale, mode, backend="numba")
    assert torch.equal(got, roi_spp(xs, boxes[order], levels, scale, mode, backend="torch"))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_channels_last_gradient_layout(mode):
    x, boxes, levels, scale = random_case(9)
    xl = x.float().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = roi_spp(xl, boxes, levels, scale, mode, backend="numba")
    assert torch.equal(out, roi_spp(x.float(), boxes, levels, scale, mode, backend="torch"))
    out.sum().backward()
    assert xl.grad.is_contiguous(memory_format=torch.channels_last)


def test_thread_count_does_not_change_results():
    x = torch.randn(1, 16, 38, 50, generator=torch.Generator().manual_seed(2))
    boxes = proposals(101, seed=1)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 3, 2):
            torch.set_num_threads(n)
            results.append(both_backends(x, boxes, (6, 3, 2, 1), 1 / 16, "max", "paper")[1])
    finally:
        torch.set_num_threads(threads)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


def test_parallel_ranges_covers_every_item_once():
    seen = []
    parallel_ranges(lambda lo, hi, acc: acc.extend(range(lo, hi)), 37, seen)
    assert sorted(seen) == list(range(37))


# --- dispatch ------------------------------------------------------------------------------------


def test_auto_picks_numba_for_cpu_float32_and_float64(monkeypatch):
    def torch_path_called(*args):
        raise AssertionError("auto used the torch path")

    monkeypatch.setattr(roi_spp_module.RoISPPFunction, "apply", torch_path_called)
    x, boxes, levels, scale = random_case(1)
    for dtype in (torch.float32, torch.float64):
        assert resolve_backend(x.to(dtype), "auto") == "numba"
        roi_spp(x.to(dtype), boxes, levels, scale)  # would raise on the torch path
        RoISpatialPyramidPooling(levels, scale)(x.to(dtype), boxes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_auto_keeps_16_bit_inputs_on_the_torch_path(dtype):
    x, boxes, levels, scale = random_case(3)
    assert resolve_backend(x.to(dtype), "auto") == "torch"
    got = roi_spp(x.to(dtype), boxes, levels, scale)
    assert torch.equal(got, roi_spp(x.to(dtype), boxes, levels, scale, backend="torch"))
    with pytest.raises(ValueError, match=r"backend='numba' needs a CPU float32 or float64"):
        roi_spp(x.to(dtype), boxes, levels, scale, backend="numba")


def test_torch_backend_is_honoured(monkeypatch):
    monkeypatch.setattr(
        "sppnet.ops._roi_spp_numba.RoISPPNumbaFunction.apply",
        lambda *args: pytest.fail("backend='torch' ran the numba kernel"),
    )
    x, boxes, levels, scale = random_case(6)
    assert resolve_backend(x, "torch") == "torch"
    roi_spp(x, boxes, levels, scale, backend="torch")
    RoISpatialPyramidPooling(levels, scale, backend="torch")(x, boxes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_input_uses_the_torch_path():
    x = torch.randn(1, 2, 5, 5, device="cuda")
    boxes = torch.tensor([[0, 0, 0, 64, 64.0]], device="cuda")
    assert resolve_backend(x, "auto") in ("torch", "triton")  # triton when importable
    with pytest.raises(ValueError, match="backend='numba'"):
        roi_spp(x, boxes, backend="numba")


def test_bad_backend_and_module_repr():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="roi_spp: backend must be one of"):
        roi_spp(x, torch.tensor([[0, 0, 0, 8, 8.0]]), backend="cuda")
    with pytest.raises(ValueError, match="RoISpatialPyramidPooling: backend must be one of"):
        RoISpatialPyramidPooling(backend="fast")
    assert "backend='auto'" in repr(RoISpatialPyramidPooling())
    assert "backend='numba'" in repr(RoISpatialPyramidPooling(backend="numba"))
