"""The ``"numba"`` backend of :func:`sppnet.ops.roi_spp`: one fused CPU kernel per pass.

The bins come from the same PyTorch helpers as the pure-PyTorch path (:mod:`sppnet.ops._bins`,
through :class:`sppnet.ops._roi_spp_autograd._Geometry`), so both backends pool exactly the same
cells; the pooling itself, max (with its arg-max) or avg, and both backward passes run in the
numba kernels of :mod:`sppnet.ops._numba_kernels`, which write each output value once, in its
final ``[K, C * B]`` place. CPU float32 and float64 only.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sppnet.ops import _numba_kernels as kernels
from sppnet.ops import _numba_max
from sppnet.ops._roi_spp_autograd import _chunk_size, _Geometry, _memory_format, make_plan

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def numba_supports(input: Tensor) -> bool:
    """Whether the numba kernels can pool ``input``: a CPU float32 or float64 tensor."""
    return input.device.type == "cpu" and input.dtype in SUPPORTED_DTYPES


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, pool)


def parallel_ranges(kernel: Callable[..., None], items: int, *args: Any) -> None:
    """Run ``kernel(lo, hi, *args)`` over ``[0, items)`` split into ranges, on as many threads as
    torch uses (``torch.set_num_threads``): the kernels release the GIL, so the ranges run
    concurrently. Ranges write disjoint outputs, so the result does not depend on the split.

    The pool is made again after a fork (a child inherits no running threads) or when torch's
    thread count changed.
    """
    global _POOL
    threads = max(1, torch.get_num_threads())
    if threads == 1 or items < 2:
        kernel(0, items, *args)
        return
    if _POOL is None or _POOL[:2] != (os.getpid(), threads):
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, "sppnet-roi-spp"))
    pieces = min(items, 4 * threads)  # a few per thread: regions differ in cost
    bounds = [items * i // pieces for i in range(pieces + 1)]
    futures = [_POOL[2].submit(kernel, lo, hi, *args) for lo, hi in itertools.pairwise(bounds)]
    for future in futures:
        future.result()


@dataclass(frozen=True)
class Layout:
    """The level bookkeeping the kernels take, as int64 arrays (see :mod:`._numba_kernels`).

    Distinct levels are indexed finest first (``make_plan``'s order); ``plan_occ`` [P, 2] lists
    (distinct level, output occurrence) pairs in that order, the PyTorch avg backward's order.
    """

    lev_n: np.ndarray
    lev_bin: np.ndarray
    lev_src: np.ndarray
    edge: np.ndarray
    occ_lev: np.ndarray
    occ_bin: np.ndarray
    plan_occ: np.ndarray
    scratch_bins: int

    @classmethod
    def of(cls, levels: tuple[int, ...], derive: bool) -> Layout:
        plan = make_plan(levels, derive)
        index = {level.n: i for i, level in enumerate(plan)}
        sizes = [level.n for level in plan]
        starts = np.cumsum([0, *(n * n for n in sizes)])
        edges = np.cumsum([0, *sizes])
        occ_lev, occ_bin = [], []
        start = 0
        for n in levels:
            occ_lev.append(index[n])
            occ_bin.append(start)
            start += n * n
        plan_occ = [
            (i, occ_bin.index(offset)) for i, level in enumerate(plan) for offset in level.offsets
        ]

        def ints(values: list[int] | np.ndarray) -> np.ndarray:
            return np.asarray(values, dtype=np.int64)

        return cls(
            lev_n=ints(sizes),
            lev_bin=ints(starts[:-1]),
            lev_src=ints([-1 if lv.source is None else index[lv.source] for lv in plan]),
            edge=ints(edges[:-1]),
            occ_lev=ints(occ_lev),
            occ_bin=ints(occ_bin),
            plan_occ=ints(plan_occ).reshape(-1, 2),
            scratch_bins=int(starts[-1]),
        )


def bin_edges(
    image: Tensor,
    coords: Tensor,
    layout: Layout,
    spatial_scale: float,
    mapping: str,
    height: int,
    width: int,
) -> list[Tensor]:
    """``[rs, re, cs, ce]``: Tensor[K, T] int64 bin rows and columns of every distinct level,
    level ``l`` in columns ``edge[l] .. edge[l] + n`` (contiguous, readable as numpy). The paper
    mapping's integer bins come from one small numba loop (:func:`._numba_kernels.paper_edges`,
    the arithmetic of :mod:`._bins`), ``roi_pool``'s float ones from :mod:`._bins` itself."""
    if mapping == "paper" and coords.dtype == torch.float64:
        shape = (coords.shape[0], int(layout.lev_n.sum()))
        edges = [torch.empty(shape, dtype=torch.int64) for _ in range(4)]
        kernels.paper_edges(
            coords.numpy(), spatial_scale, height, width, layout.lev_n, layout.edge,
            *(t.numpy() for t in edges),
        )  # fmt: skip
        return edges
    geometry = _Geometry(image, coords, spatial_scale, mapping, height, width)
    per_level = [geometry.bins(int(n), 0, image.shape[0]) for n in layout.lev_n]
    return [torch.cat([edges[a] for edges in per_level], dim=1).contiguous() for a in range(4)]


class RoISPPNumbaFunction(torch.autograd.Function):
    """Autograd wrapper of the numba kernels; same arguments as ``RoISPPFunction``."""

    @staticmethod
    def forward(
        ctx,
        input: Tensor,
        image: Tensor,
        coords: Tensor,
        levels: tuple[int, ...],
        spatial_scale: float,
        mode: str,
        mapping: str,
    ) -> Tensor:
        _, channels, height, width = input.shape
        regions = image.shape[0]
        layout = Layout.of(levels, derive=mode == "max" and mapping == "paper")
        out = input.new_empty((regions, channels * sum(n * n for n in levels)))
        with_argmax = mode == "max" and ctx.needs_input_grad[0]
        argmax = torch.empty(
            out.shape if with_argmax else (0, 0), dtype=argmax_dtype(height, width)
        )
        edges = bin_edges(image, coords, layout, spatial_scale, mapping, height, width)
        ctx.layout, ctx.mode = layout, mode
        ctx.input_meta = (input.shape, input.dtype, _memory_format(input))
        if mode == "max":
            ctx.save_for_backward(image, argmax)
        else:
            ctx.save_for_backward(image, *edges)
        if regions == 0:
            return out
        e = [t.numpy() for t in edges]
        lay = layout
        if mode == "max":
            parallel_ranges(
                _numba_max.max_forward, regions, _channel_blocks(input.detach()), image.numpy(),
                *e, lay.edge, lay.lev_n, lay.lev_bin, lay.lev_src, lay.occ_lev, lay.occ_bin,
                out.numpy(), argmax.numpy(), _holds_nan(input.detach()),
            )  # fmt: skip
        else:
            values, counts = _integral(input.detach().permute(0, 2, 3, 1).contiguous().numpy())
            parallel_ranges(
                kernels.avg_forward, regions, values, counts, image.numpy(), *e, lay.edge,
                lay.lev_n, lay.occ_lev, lay.occ_bin, out.numpy(),
            )  # fmt: skip
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        shape, dtype, memory_format = ctx.input_meta
        n_img, channels, height, width = shape
        lay: Layout = ctx.layout
        image, *rest = ctx.saved_tensors
        grad = torch.zeros(shape, dtype=dtype)
        if image.shape[0]:
            g, strides = _flat(grad_out.to(dtype))
            if ctx.mode == "max":
                (argmax,) = rest
                parallel_ranges(
                    kernels.max_backward, channels, g, strides, argmax.numpy(), image.numpy(),
                    lay.lev_n[lay.occ_lev], lay.occ_bin,
                    grad.view(n_img, channels, height * width).numpy(),
                )  # fmt: skip
            else:
                acc = np.zeros((channels, n_img, height + 1, width + 1), dtype=np.float64)
                step = _chunk_size(channels, make_plan(tuple(int(n) for n in lay.lev_n), False))
                parallel_ranges(
                    kernels.avg_backward, channels, g, strides, image.numpy(),
                    *(t.numpy() for t in rest), lay.edge, lay.lev_n, lay.plan_occ, lay.occ_bin,
                    step, acc, grad.numpy(),
                )  # fmt: skip
        return grad.contiguous(memory_format=memory_format), None, None, None, None, None, None


def argmax_dtype(height: int, width: int) -> torch.dtype:
    """The saved arg-max's dtype: int16 while every cell index and the empty-bin mark ``H * W``
    fit (half the memory and page faults of int32), int32 beyond."""
    return torch.int16 if height * width < 2**15 else torch.int32


def _channel_blocks(x: Tensor) -> np.ndarray:
    """The map [N, C, H, W] as [C / block, N, H, W, block] (C zero-padded to whole blocks), the
    layout of :func:`._numba_max.max_forward`: one contiguous block of channels-last map each.
    A contiguous map is copied by :func:`._numba_max.channel_blocks` (SIMD tiles, 3x faster than
    torch's permuted copy), any other layout by torch."""
    n_img, channels, height, width = x.shape
    block = min(_numba_max.CHANNEL_BLOCK, channels)
    blocks = -(-channels // block)
    if x.is_contiguous():
        xb = torch.empty((blocks, n_img, height, width, block), dtype=x.dtype).numpy()
        _numba_max.channel_blocks(
            x.view(n_img, channels, height * width).numpy(),
            xb.reshape(blocks, n_img, height * width, block),
        )
        return xb
    padded = x
    if blocks * block != channels:
        padded = x.new_zeros((n_img, blocks * block, height, width))
        padded[:, :channels] = x
    view = padded.view(n_img, blocks, block, height, width).permute(1, 0, 3, 4, 2)
    return view.contiguous().numpy()


def _holds_nan(x: Tensor) -> bool:
    """Whether ``x`` holds a NaN. A NaN makes the sum NaN, so a sum that is not NaN settles it
    (one pass, no bool temporary: 20x cheaper than ``isnan().any()`` on a conv5 map); a NaN sum
    may also come from +Inf and -Inf, so then the exact check decides."""
    return bool(x.sum().isnan()) and bool(x.isnan().any())


def _flat(t: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D tensor as a flat numpy view of the storage it spans, plus its strides (int64 [2]):
    the kernels then take contiguous and strided (e.g. expanded) gradients alike, compiled once."""
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True))
    flat = t.as_strided((span,), (1,)).numpy()
    return flat, np.asarray(t.stride(), dtype=np.int64)


def _integral(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 summed-area table of ``x`` [N, H, W, C] and, only if ``x`` holds NaN or Inf, the
    int64 tables counting NaN, +Inf and -Inf cells (else a [0, 1, 1, 1, 1] placeholder)."""
    n_img, height, width, channels = x.shape
    values = np.zeros((n_img, height + 1, width + 1, channels), dtype=np.float64)
    shape = (3, n_img, height + 1, width + 1, channels)
    finite = bool(np.isfinite(x).all())
    counts = np.zeros((0, 1, 1, 1, 1) if finite else shape, dtype=np.int64)
    kernels.integral_tables(x, values, counts)
    return values, counts
