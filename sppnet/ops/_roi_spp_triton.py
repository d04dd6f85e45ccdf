"""The ``"triton"`` backend of :func:`sppnet.ops.roi_spp`: Triton kernels, forward and backward.

The bins come from the same PyTorch helpers as the pure-PyTorch path (through
:class:`sppnet.ops._roi_spp_autograd._Geometry`) and avg pooling reads the same float64 integral
image (:class:`sppnet.ops._integral.IntegralTable`), so both backends pool the same cells with
the same arithmetic; the pooling and both backward passes run in the kernels of
:mod:`sppnet.ops._triton_kernels`.

The backward passes are deterministic: instead of scattering with atomics (whose order, and so
whose float sums, change from run to run), the contributions are sorted by their target with a
stable sort and each target adds its own in that order (see :func:`_max_backward`,
:func:`_avg_backward` and docs/ops.md, "Triton backend").

CUDA tensors; or CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``), which is how the
test suite runs these kernels without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import torch
from torch import Tensor

from sppnet.ops._checks import coordinate_dtype
from sppnet.ops._integral import IntegralTable
from sppnet.ops._roi_spp_autograd import _chunk_size, _Geometry, make_plan, roi_spp_function

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
TILE = 2048  # elements of one program's [regions x bins, channels] tile
INTERPRETER_TILE = 2**16
BACKWARD_BLOCK = 128  # map cells per program of the max backward pass


def interpreter_enabled() -> bool:
    """Whether Triton's interpreter is asked for (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_supports(input: Tensor) -> bool:
    """Whether the Triton kernels can pool ``input``: a float32, float16, bfloat16 or float64
    tensor on CUDA, or on the CPU under the interpreter, with triton importable."""
    device_ok = input.device.type == "cuda" or (
        input.device.type == "cpu" and interpreter_enabled()
    )
    return device_ok and input.dtype in SUPPORTED_DTYPES and triton_available()


def _kernels() -> ModuleType:
    """The kernel module; under ``TRITON_INTERPRET=1`` checks that the interpreter is really on.

    ``triton.jit`` picks compiled or interpreted when a function is defined, triton's own
    library (``tl.max`` ...) included, so the variable must be set before triton is imported.
    """
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    from sppnet.ops import _triton_kernels

    interpreted = isinstance(tl.max, InterpretedFunction)
    if interpreter_enabled() != interpreted or not isinstance(
        _triton_kernels.max_read_level, type(tl.max)
    ):
        raise RuntimeError(
            "roi_spp: TRITON_INTERPRET changed after triton (or sppnet.ops._triton_kernels) was "
            "imported; set it before, e.g. in the environment of the process"
        )
    return _triton_kernels


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _tile(n: int, channels: int, regions: int) -> dict[str, int]:
    """A program's tile: ``RB`` regions x ``BINS`` bins (a level's ``n * n`` padded to a power of
    two) x ``CBLOCK`` channels, about :data:`TILE` elements (far more under the interpreter,
    whose cost is per program, not per element)."""
    tile = INTERPRETER_TILE if interpreter_enabled() else TILE
    bins = _next_pow2(n * n)
    cblock = max(1, min(_next_pow2(channels), tile // bins))
    rb = max(1, min(_next_pow2(regions), tile // (bins * cblock)))
    return {"N": n, "RB": rb, "BINS": bins, "CBLOCK": cblock}


def _forward(
    input: Tensor,
    image: Tensor,
    coords: Tensor,
    levels: tuple[int, ...],
    spatial_scale: float,
    mode: str,
    mapping: str,
    with_argmax: bool,
) -> tuple[Tensor, Tensor | None]:
    """The output [K, C * B] and, for max with ``with_argmax``, the arg-max keys (same shape)."""
    n_img, channels, height, width = input.shape
    regions = image.shape[0]
    out = input.new_empty((regions, channels * sum(n * n for n in levels)))
    numel = n_img * height * width * channels
    key_dtype = torch.int32 if numel < 2**31 - 1 else torch.int64
    arg = torch.empty(out.shape if mode == "max" else (0, 0), dtype=key_dtype, device=input.device)
    if regions == 0:
        return out, arg if with_argmax else None
    plan = make_plan(levels, derive=mode == "max" and mapping == "paper")
    geometry = _Geometry(image, coords, spatial_scale, mapping, height, width)
    kernels = _kernels()
    # Comparisons in float32 (float64 maps: float64): exact for 16-bit values, and the
    # interpreter compares bfloat16 tensors by their bits.
    cmp = tl_float(kernels, input.dtype == torch.float64)
    first_bin = {level.n: level.offsets[0] for level in plan}
    sources = {level.source for level in plan}
    if mode == "max":
        x = input.detach().permute(0, 2, 3, 1).contiguous()
    else:
        table = IntegralTable(input.detach().permute(0, 2, 3, 1), coordinate_dtype(input.device))
        special = table.values[:0] if table.special is None else torch.stack(table.special)
    for level in plan:
        n = level.n
        sizes = _tile(n, channels, regions)
        grid = (triton_cdiv(regions, sizes["RB"]), triton_cdiv(channels, sizes["CBLOCK"]))
        occ = torch.tensor(level.offsets, dtype=torch.int64, device=input.device)
        write_arg = with_argmax or n in sources
        if mode == "max" and level.source is not None:
            kernels.max_derive_level[grid](
                out, arg, occ, regions, len(level.offsets), first_bin[level.source], channels,
                out.shape[1], M=level.source, WRITE_ARG=write_arg, CMP=cmp, **sizes,
            )  # fmt: skip
            continue
        edges = [e.contiguous() for e in geometry.bins(n, 0, regions)]
        if mode == "max":
            kernels.max_read_level[grid](
                x, image, *edges, out, arg, occ, regions, len(level.offsets), channels, height,
                width, out.shape[1], numel, WRITE_ARG=write_arg, CMP=cmp, **sizes,
            )  # fmt: skip
        else:
            bf16 = out.dtype == torch.bfloat16
            kernels.avg_level[grid](
                table.values, special, image, *edges, out.view(torch.int16) if bf16 else out,
                occ, regions, len(level.offsets), channels, height, width, out.shape[1],
                special.shape[1] * channels if special.numel() else 0,
                HAS_SPECIAL=table.special is not None, BF16=bf16,
                OUT64=out.dtype == torch.float64, **sizes,
            )  # fmt: skip
    return out, arg if with_argmax else None


def tl_float(kernels: ModuleType, wide: bool):
    return kernels.tl.float64 if wide else kernels.tl.float32


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _max_backward(grad_out: Tensor, arg: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """Each map cell sums the gradients of the outputs whose arg-max it is.

    A stable sort of the arg-max keys groups every cell's contributions and keeps them in the flat
    output order; each cell then adds its own one by one (:func:`max_backward`), the order of the
    torch path's (CPU) ``index_add_``, so the sums are its sums, every run.
    """
    n_img, channels, height, width = shape
    targets = n_img * height * width * channels
    keys, perm = torch.sort(arg.reshape(-1), stable=True)
    cells = torch.arange(targets, dtype=keys.dtype, device=keys.device)
    lo = torch.searchsorted(keys, cells)
    hi = torch.searchsorted(keys, cells, right=True)
    acc_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    acc = torch.empty(targets, dtype=acc_dtype, device=arg.device)
    block = INTERPRETER_TILE if interpreter_enabled() else BACKWARD_BLOCK
    block = min(block, _next_pow2(targets))
    kernels = _kernels()
    kernels.max_backward[(triton_cdiv(targets, block),)](
        grad_out.reshape(-1).contiguous(), perm, lo, hi, acc, targets,
        BLOCK=block, ACC=tl_float(kernels, acc_dtype == torch.float64),
    )  # fmt: skip
    return acc.view(n_img, height, width, channels).permute(0, 3, 1, 2).to(dtype)


def _avg_backward(
    grad_out: Tensor,
    shape: torch.Size,
    dtype: torch.dtype,
    image: Tensor,
    coords: Tensor,
    levels: tuple[int, ...],
    spatial_scale: float,
    mapping: str,
) -> Tensor:
    """The adjoint of the integral-image means, as the torch path computes it, without atomics.

    Every bin corner is an entry (target table row, region, output column, sign, count). Sorted by
    (target row, chunk of regions) with a stable sort, from entries listed level by level,
    occurrence, corner, region and bin, each row's entries come in the exact order of the torch
    path's ``index_add_`` calls (chunks, levels, occurrences, corners, regions, bins); each row then
    adds its own (:func:`avg_backward`). Two reverse cumulative sums (the torch path's own code)
    turn the result into the map's gradient.
    """
    n_img, channels, height, width = shape
    device = image.device
    regions = image.shape[0]
    table = IntegralTable.shape_only((n_img, height, width, channels))
    geometry = _Geometry(image, coords, spatial_scale, mapping, height, width)
    plan = make_plan(levels, derive=False)
    step = _chunk_size(channels, plan)
    chunks = triton_cdiv(regions, step)
    parts: dict[str, list[Tensor]] = {k: [] for k in ("row", "region", "col", "sq", "cnt", "sgn")}
    region = torch.arange(regions, device=device)
    for level in plan:
        n = level.n
        corners, count = table.corner_rows(image, *geometry.bins(n, 0, regions))
        count = count.clamp(min=1).reshape(-1)
        bin_index = torch.arange(n * n, device=device).repeat(regions)
        for offset in level.offsets:
            for corner, rows in enumerate(corners):
                parts["row"].append(rows)
                parts["region"].append(region.repeat_interleave(n * n))
                parts["col"].append(offset * channels + bin_index)
                parts["sq"].append(torch.full_like(rows, n * n))
                parts["cnt"].append(count)
                parts["sgn"].append(torch.full_like(rows, 1 if corner in (0, 3) else -1))
    entry = {name: torch.cat(values) for name, values in parts.items()}
    order_key = entry["row"] * chunks + entry["region"] // step
    keys, perm = torch.sort(order_key, stable=True)
    rows = n_img * (height + 1) * (width + 1)
    bounds = torch.arange(rows + 1, device=device) * chunks
    edges = torch.searchsorted(keys, bounds)
    acc = torch.empty((rows, channels), dtype=torch.float64, device=device)
    tile = INTERPRETER_TILE if interpreter_enabled() else TILE // 2
    cblock = max(1, min(_next_pow2(channels), 256))
    rblock = max(1, min(_next_pow2(rows), tile // cblock))
    _kernels().avg_backward[(triton_cdiv(rows, rblock), triton_cdiv(channels, cblock))](
        grad_out, grad_out.stride(0), grad_out.stride(1), perm, edges[:-1], edges[1:],
        entry["region"], entry["col"], entry["sq"], entry["cnt"], entry["sgn"], acc, rows,
        channels, RBLOCK=rblock, CBLOCK=cblock,
    )  # fmt: skip
    return table.input_grad(acc).permute(0, 3, 1, 2).to(dtype)


#: The Triton path: same arguments as ``RoISPPFunction``.
RoISPPTritonFunction = roi_spp_function(
    "RoISPPTritonFunction", _forward, _max_backward, _avg_backward
)
