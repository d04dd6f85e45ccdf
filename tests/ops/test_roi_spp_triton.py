"""The Triton backend of roi_spp against the pure-PyTorch path and the brute-force reference.

Without a GPU the kernels run on CPU tensors under Triton's interpreter. ``TRITON_INTERPRET=1``
must be set before triton is first imported (``triton.jit`` fixes the mode of every function,
``tl.max`` included, when it is defined), so the tests marked ``triton_interpreter`` run in a
child pytest process started with it (``test_interpreted_cases_in_a_subprocess``); in this process
they are skipped, unless it was itself started with the variable. The interpreter's cost is per
program, so the cases are small. Tests marked ``cuda`` run the compiled kernels on a GPU
(``scripts/gpu-check.sh``) and are skipped without one.

Also here: the autocast policy of ``roi_spp`` (CPU bfloat16 autocast, every backend).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _spp_reference import roi_spp_grad_reference, roi_spp_reference
from test_roi_spp import make_boxes, random_case

from sppnet.benchmarks.ops import proposals
from sppnet.ops import RoISpatialPyramidPooling, roi_spp
from sppnet.ops._roi_spp_triton import interpreter_enabled
from sppnet.ops.roi_spp import resolve_backend

pytest.importorskip("triton")

INTERPRETED = interpreter_enabled()
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def interpreted(test):
    """A test of the kernels under the interpreter: runs in the child process only."""
    skip = pytest.mark.skipif(
        not INTERPRETED, reason="runs in the TRITON_INTERPRET=1 subprocess (see module doc)"
    )
    return pytest.mark.triton_interpreter(skip(test))


@pytest.mark.skipif(INTERPRETED, reason="this process is the interpreter run")
def test_interpreted_cases_in_a_subprocess():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider"]
    command += ["-m", "triton_interpreter"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


def run(x, boxes, levels, scale, mode, mapping, backend, grad=None):
    """Output and input gradient of one call (``grad``: the output gradient, default seeded)."""
    leaf = x.detach().clone().requires_grad_(True)
    out = roi_spp(leaf, boxes, levels, scale, mode, mapping, backend=backend)
    if grad is None:
        gen = torch.Generator().manual_seed(out.numel())
        grad = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
    out.backward(grad.to(out.device))
    return out.detach(), leaf.grad


def assert_identical(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def triton_and_torch(x, boxes, levels, scale, mode, mapping, grad=None):
    return (
        run(x, boxes, levels, scale, mode, mapping, "triton", grad),
        run(x, boxes, levels, scale, mode, mapping, "torch", grad),
    )


@interpreted
@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_random_cases_bit_for_bit(mode, mapping):
    """1-2 images, 1-3 channels, maps of 1-13 cells a side (often smaller than the finest level),
    boxes inside, straddling, far outside, tiny, inverted and empty; levels in any order and
    repeated; float32 and float64."""
    for seed, dtype in [(0, torch.float32), (1, torch.float32), (2, torch.float64)]:
        for seed_levels in (seed, seed + 4):  # (4,2,1) (6,3,2,1) (1,) / (2,2) (1,4,2) (7,)
            x, boxes, _, scale = random_case(seed)
            _, _, levels, _ = random_case(seed_levels)
            (out, grad), (want, want_grad) = triton_and_torch(
                x.to(dtype), boxes[:6], levels, scale, mode, mapping
            )
            assert out.dtype == dtype and out.shape == want.shape
            assert_identical(out, want)
            assert_identical(grad, want_grad)


@interpreted
@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_matches_brute_force_reference(mode, mapping):
    x, boxes, levels, scale = random_case(5)
    x = x.float()
    out, grad = run(x, boxes[:8], levels, scale, mode, mapping, "triton")
    want = roi_spp_reference(x.double().numpy(), boxes[:8].numpy(), levels, scale, mode, mapping)
    gen = torch.Generator().manual_seed(out.numel())
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64).float()
    want_grad = roi_spp_grad_reference(
        x.double().numpy(), boxes[:8].numpy(), levels, scale, mode, mapping, g.double().numpy()
    )
    if mode == "max":  # a max is one of the inputs: exact
        np.testing.assert_array_equal(out.double().numpy(), want)
    else:  # float64 sums, rounded once to float32
        np.testing.assert_allclose(out.double().numpy(), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad.double().numpy(), want_grad, rtol=1e-5, atol=1e-6)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_16_bit_inputs(dtype, mode):
    """16-bit maps: bit for bit the torch path (same float64 sums for avg, rounded through
    float32, and float32 gradient sums); against the float64 reference within the dtype's
    rounding (float16 2e-3, bfloat16 1e-2 relative)."""
    x, boxes, levels, scale = random_case(1)
    x16 = x.to(dtype)
    for mapping in ("paper", "round"):
        (out, grad), (want, want_grad) = triton_and_torch(x16, boxes, levels, scale, mode, mapping)
        assert out.dtype == dtype and grad.dtype == dtype
        assert_identical(out, want)
        assert_identical(grad, want_grad)
    ref = roi_spp_reference(x16.double().numpy(), boxes.numpy(), levels, scale, mode, "round")
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=tol, atol=tol)


@interpreted
@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 2, 1), (5, 3), (1, 2, 4)])
def test_ties_pick_the_same_cell(levels):
    """Integer-valued post-ReLU maps tie everywhere: the first maximal cell in row-major order,
    for levels read from the map and derived from a finer one alike."""
    gen = torch.Generator().manual_seed(len(levels))
    x = torch.randn(2, 2, 9, 11, generator=gen).mul(2).round().clamp(min=0)
    boxes = make_boxes(gen, 10, 2, 9, 11, 16.0)
    for mapping in ("paper", "round"):
        (out, grad), (want, want_grad) = triton_and_torch(x, boxes, levels, 1 / 16, "max", mapping)
        assert_identical(out, want)
        assert_identical(grad, want_grad)


@interpreted
def test_map_smaller_than_the_coarsest_level_and_repeated_levels():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 2, 3, generator=gen)
    boxes = torch.tensor([[0, -40, -40, 200, 200], [0, 10, 5, 12, 6], [0, 90, 70, -30, -20.0]])
    for mode in ("max", "avg"):
        for levels in ((6, 3, 2, 1), (2, 6, 2)):
            (out, grad), (want, want_grad) = triton_and_torch(
                x, boxes, levels, 1 / 16, mode, "paper"
            )
            assert_identical(out, want)
            assert_identical(grad, want_grad)


@interpreted
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_backward_is_deterministic_on_crowded_cells(mode):
    """Many regions share their arg-max cells and bin corners: two backward passes give the
    same bits, and the torch path's (CPU, serial) sums."""
    x = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))
    boxes = proposals(40, seed=1)
    boxes[:, 1:] *= 0.32  # onto a 192 x 256 image: 12 x 16 cells at stride 16
    grad = torch.randn(40, 4 * 50, generator=torch.Generator().manual_seed(2))
    first = run(x, boxes, (6, 3, 2, 1), 1 / 16, mode, "paper", "triton", grad)
    second = run(x, boxes, (6, 3, 2, 1), 1 / 16, mode, "paper", "triton", grad)
    want = run(x, boxes, (6, 3, 2, 1), 1 / 16, mode, "paper", "torch", grad)
    assert torch.equal(first[1], second[1])
    assert_identical(first[1], want[1])
    assert_identical(first[0], want[0])


@interpreted
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_zero_boxes_nan_inf_layouts_and_expanded_gradients(mode):
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)]):
        out = roi_spp(x, boxes, (4, 2, 1), mode=mode, backend="triton")
        assert out.shape == (0, 3 * 21)
        out.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
    special = torch.zeros(1, 3, 8, 8)
    special[0, 0, 2, 3] = float("nan")
    special[0, 1, 6, 6] = float("inf")
    special[0, 2, 1, 1] = float("inf")
    special[0, 2, 2, 2] = float("-inf")
    boxes = torch.tensor([[0, 0, 0, 128, 128], [0, 80, 80, 128, 128], [0, -16, -16, 32, 32.0]])
    got = roi_spp(special, boxes, (2, 1), 1 / 16, mode, backend="triton")
    assert_identical(got, roi_spp(special, boxes, (2, 1), 1 / 16, mode, backend="torch"))
    x, boxes, levels, scale = random_case(9)
    x = x.float().contiguous(memory_format=torch.channels_last)
    ones = torch.ones(()).expand(boxes.shape[0], x.shape[1] * sum(n * n for n in levels))
    (out, grad), (want, want_grad) = triton_and_torch(x, boxes, levels, scale, mode, "paper", ones)
    assert grad.is_contiguous(memory_format=torch.channels_last)
    assert_identical(out, want)
    assert_identical(grad, want_grad)
    as_list = [boxes[boxes[:, 0] == i, 1:] for i in range(x.shape[0])]
    order = torch.cat([torch.nonzero(boxes[:, 0] == i).flatten() for i in range(x.shape[0])])
    assert_identical(roi_spp(x, as_list, levels, scale, mode, backend="triton"), out[order])


@interpreted
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    boxes = make_boxes(gen, 4, 1, 5, 6, 8.0)
    assert torch.autograd.gradcheck(
        lambda t: roi_spp(t, boxes, (3, 1), 1 / 8, mode, "paper", backend="triton"),
        (x,),
        fast_mode=True,
    )


@pytest.mark.skipif(INTERPRETED, reason="needs the compiled mode")
def test_backend_selection_without_the_interpreter():
    x = torch.zeros(1, 2, 4, 4)
    assert resolve_backend(x, "auto") in ("numba", "torch")
    with pytest.raises(ValueError, match="backend='triton' needs a CUDA"):
        roi_spp(x, torch.tensor([[0, 0, 0, 8, 8.0]]), backend="triton")


@interpreted
def test_backend_selection_and_repr():
    x = torch.zeros(1, 2, 4, 4)
    boxes = torch.tensor([[0, 0, 0, 8, 8.0]])
    assert resolve_backend(x, "triton") == "triton"
    assert resolve_backend(x, "auto") != "triton"  # never triton on the CPU
    with pytest.raises(ValueError, match="backend='triton' needs"):
        roi_spp(x.to(torch.float8_e4m3fn), boxes, backend="triton")
    pool = RoISpatialPyramidPooling((2, 1), backend="triton")
    assert "last_backend" not in repr(pool)
    assert pool(x, boxes).shape == (1, 2 * 5)
    assert "backend='triton'" in repr(pool) and "last_backend='triton'" in repr(pool)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_cpu_bf16_autocast_pools_in_the_maps_dtype(mode, backend):
    """Under autocast the op pools in its input's dtype: a float32 map gives float32 (no
    downcast), a bfloat16 map bfloat16 (no upcast), both equal to the calls without autocast,
    gradients included; a conv -> roi_spp -> linear model trains under it."""
    x, boxes, levels, scale = random_case(2)
    for dtype in (torch.float32, torch.bfloat16):
        plain = run(x.to(dtype), boxes, levels, scale, mode, "paper", backend)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = run(x.to(dtype), boxes, levels, scale, mode, "paper", backend)
        assert cast[0].dtype == dtype and cast[1].dtype == dtype
        assert_identical(cast[0], plain[0])
        assert_identical(cast[1], plain[1])
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    fc = torch.nn.Linear(8 * 21, 2)
    image = torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(image)
        pooled = roi_spp(features, torch.tensor([[0, 0, 0, 300, 200.0]]), mode=mode)
        assert features.dtype == torch.bfloat16 and pooled.dtype == torch.bfloat16
        loss = fc(pooled).float().sum()
    loss.backward()
    assert conv.weight.grad is not None and bool(torch.isfinite(conv.weight.grad).all())


@interpreted
def test_triton_under_cpu_autocast():
    x, boxes, levels, scale = random_case(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(x.float(), boxes, levels, scale, "max", "paper", "triton")
    want = run(x.float(), boxes, levels, scale, "max", "paper", "torch")
    assert got[0].dtype == torch.float32
    assert_identical(got[0], want[0])
    assert_identical(got[1], want[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("mapping", ["paper", "round"])
@pytest.mark.cuda
@needs_cuda
def test_cuda_matches_torch_path(dtype, mode, mapping):
    """Compiled kernels on a GPU, a conv5-sized map and the benchmark's proposals: values equal
    the torch path's on the same GPU bit for bit, gradients within float32 summation-order
    error (the torch path's CUDA ``index_add_`` uses atomics), and two backward passes are
    bit-equal."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 38, 50, generator=gen).to("cuda", dtype)
    boxes = proposals(500, seed=3)
    boxes[250:, 0] = 1
    boxes = boxes.cuda()
    assert resolve_backend(x, "auto") == "triton"
    grad = torch.randn(500, 64 * 50, generator=gen).to("cuda", dtype)
    levels = (6, 3, 2, 1)
    (out, g1), (want, want_grad) = triton_and_torch(x, boxes, levels, 1 / 16, mode, mapping, grad)
    _, g2 = run(x, boxes, levels, 1 / 16, mode, mapping, "triton", grad)
    assert torch.equal(g1, g2)
    assert_identical(out, want)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(g1, want_grad, rtol=tol, atol=tol)


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="needs the compiled mode")
def test_kernels_compile_for_a_gpu_without_one():
    """Every kernel goes through Triton's whole compiler (down to an sm_90 cubin, with the ptxas
    that ships in the triton wheel) without a GPU: what the interpreter cannot check."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from sppnet.ops import _triton_kernels as kernels

    def compile_(fn, constants, **types):
        signature = {name: "constexpr" if name in constants else "i32" for name in fn.arg_names}
        signature.update(types)
        compiled = triton.compile(
            ASTSource(fn, signature, constants), target=GPUTarget("cuda", 90, 32)
        )
        assert compiled.asm["cubin"]

    edges = {name: "*i64" for name in ("image_ptr", "rs_ptr", "re_ptr", "cs_ptr", "ce_ptr")}
    tile = {"N": 6, "RB": 1, "BINS": 64, "CBLOCK": 32}
    compile_(
        kernels.max_read_level,
        {**tile, "WRITE_ARG": True, "CMP": tl.float32},
        x_ptr="*bf16", out_ptr="*bf16", arg_ptr="*i32", occ_ptr="*i64", **edges,
    )  # fmt: skip
    compile_(
        kernels.max_derive_level,
        {"N": 3, "M": 6, "RB": 2, "BINS": 16, "CBLOCK": 64, "WRITE_ARG": False, "CMP": tl.float32},
        out_ptr="*fp16", arg_ptr="*i32", occ_ptr="*i64",
    )  # fmt: skip
    compile_(
        kernels.avg_level,
        {**tile, "HAS_SPECIAL": True, "BF16": True, "OUT64": False},
        table_ptr="*fp64", special_ptr="*fp64", out_ptr="*i16", occ_ptr="*i64", **edges,
    )  # fmt: skip
    compile_(
        kernels.max_backward,
        {"BLOCK": 128, "ACC": tl.float32},
        grad_ptr="*fp32", perm_ptr="*i64", lo_ptr="*i64", hi_ptr="*i64", acc_ptr="*fp32",
    )  # fmt: skip
    entries = ("perm_ptr", "lo_ptr", "hi_ptr", "region_ptr", "column_ptr", "square_ptr")
    compile_(
        kernels.avg_backward,
        {"RBLOCK": 4, "CBLOCK": 256},
        grad_ptr="*bf16", acc_ptr="*fp64", count_ptr="*i64", sign_ptr="*i64",
        **{name: "*i64" for name in entries},
    )  # fmt: skip
