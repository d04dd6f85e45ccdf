"""The pure-PyTorch RoI spatial pyramid pooling kernel: forward, backward and the level plan.

Regions are processed in chunks so that the working memory beyond the output stays bounded (see
:data:`CHUNK_ELEMENTS`); levels are a Python loop, regions never are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sppnet.ops._bins import exact_bins, paper_window, round_bins
from sppnet.ops._checks import coordinate_dtype
from sppnet.ops._integral import IntegralTable
from sppnet.ops._range_max import Pooled, RangeMaxTable

# Each temporary of a chunk holds at most this many elements (plus one region's worth): with four
# corner gathers and two reductions alive at once, the working set beyond the output, the saved
# arg-max and the per-map table is about 8 * CHUNK_ELEMENTS elements (64 MiB for float32, twice
# that while also tracking arg-max indices for the backward pass).
CHUNK_ELEMENTS = 2**21

# The range-max table may use exact window sizes (fewer gathers) while it holds at most this many
# values; past it, powers of two only (about N*C*H*W*log2(H)*log2(W) values).
TABLE_CELLS = 2**25
BUILD_COST = 4


@dataclass(frozen=True)
class LevelPlan:
    """How one distinct level ``n`` is computed and where it goes.

    ``source`` is the finer level ``k * n`` it is derived from (max pooling with the paper's exact
    bins only: every coarse bin is then the union of ``k x k`` fine bins), or None to read the
    map. ``offsets`` are the first bins of each occurrence of ``n`` in the output.
    """

    n: int
    source: int | None
    offsets: tuple[int, ...]


def make_plan(levels: tuple[int, ...], derive: bool) -> list[LevelPlan]:
    """Distinct levels, finest first, each derived from its coarsest multiple when ``derive``."""
    offsets: dict[int, list[int]] = {}
    start = 0
    for n in levels:
        offsets.setdefault(n, []).append(start)
        start += n * n
    distinct = sorted(offsets, reverse=True)
    plan = []
    for n in distinct:
        multiples = [m for m in distinct if m > n and m % n == 0]
        source = min(multiples) if derive and multiples else None
        plan.append(LevelPlan(n, source, tuple(offsets[n])))
    return plan


def longest_side(size: int, plan: list[LevelPlan], exact: bool) -> int:
    """The longest bin side (in cells) any region can have along an axis of ``size`` cells.

    With the paper's exact bins inside a window of at most ``size`` cells, a bin of level ``n``
    spans at most ``ceil(size / n) + 1`` cells; ``roi_pool``'s bins are only bounded by the map.
    """
    if not exact:
        return size
    finest_read = min(level.n for level in plan if level.source is None)
    return min(size, -(-size // finest_read) + 1)


def window_sizes(
    height: int, width: int, plan: list[LevelPlan], regions: int, exact: bool, budget: int
) -> tuple[list[int], list[int]]:
    """Window sizes of the range-max table along rows and columns, by a simple cost model.

    Per axis: powers of two (two gathers per bin side, ``log2`` blocks) or every size up to the
    longest bin side (one gather, more blocks). Cost in units of one C-vector pass: building costs
    ``BUILD_COST`` per block and cell (strided merges into fresh memory, measured about 4x a
    gather on CPU), querying a bin ``g`` gathers and ``g - 1`` merges. The cheapest choice whose
    table holds at most ``budget`` cells wins.
    """
    longest = (longest_side(height, plan, exact), longest_side(width, plan, exact))
    bins = sum(level.n**2 for level in plan if level.source is None)
    best = None
    for exact_rows in (False, True):
        for exact_cols in (False, True):
            sizes = [
                list(range(1, side + 1)) if exact_axis else [2**a for a in range(side.bit_length())]
                for side, exact_axis in zip(longest, (exact_rows, exact_cols), strict=True)
            ]
            cells = sum((height - r + 1) * (width - c + 1) for r in sizes[0] for c in sizes[1])
            gathers = (1 if exact_rows else 2) * (1 if exact_cols else 2)
            cost = BUILD_COST * cells + regions * bins * (2 * gathers - 1)
            if (cells <= budget or not (exact_rows or exact_cols)) and (
                best is None or cost < best[0]
            ):
                best = (cost, sizes)
    assert best is not None
    return best[1][0], best[1][1]


def _output_view(buffer: Tensor, offset: int, n: int, channels: int) -> Tensor:
    """The strided ``[K, n, n, C]`` view of bins ``offset .. offset + n*n`` of a [K, C*B] buffer."""
    block = buffer[:, channels * offset : channels * (offset + n * n)]
    return block.unflatten(1, (channels, n, n)).permute(0, 2, 3, 1)


class _Geometry:
    """Bin edges of every level for a chunk of regions, under one mapping."""

    def __init__(
        self,
        image: Tensor,
        coords: Tensor,
        spatial_scale: float,
        mapping: str,
        height: int,
        width: int,
    ) -> None:
        self.image, self.coords, self.mapping = image, coords, mapping
        self.scale, self.height, self.width = spatial_scale, height, width
        if mapping == "paper":
            x1, y1, x2, y2 = coords.unbind(1)
            self.rows = paper_window(y1, y2, spatial_scale, height)
            self.cols = paper_window(x1, x2, spatial_scale, width)

    def bins(self, n: int, lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(row_start, row_end, col_start, col_end)``, each Tensor[hi - lo, n] int64."""
        if self.mapping == "paper":
            rows = exact_bins(self.rows[0][lo:hi], self.rows[1][lo:hi], n)
            cols = exact_bins(self.cols[0][lo:hi], self.cols[1][lo:hi], n)
        else:
            x1, y1, x2, y2 = self.coords[lo:hi].unbind(1)
            rows = round_bins(y1, y2, self.scale, n, self.height)
            cols = round_bins(x1, x2, self.scale, n, self.width)
        return rows[0], rows[1], cols[0], cols[1]


def _chunk_size(channels: int, plan: list[LevelPlan]) -> int:
    per_region = max(1, channels * max(level.n for level in plan) ** 2)
    return max(1, CHUNK_ELEMENTS // per_region)


def roi_spp_forward(
    input: Tensor,
    image: Tensor,
    coords: Tensor,
    levels: tuple[int, ...],
    spatial_scale: float,
    mode: str,
    mapping: str,
    with_argmax: bool,
) -> tuple[Tensor, Tensor | None]:
    """Pool every region; returns the output [K, C * B] and, for max with ``with_argmax``, the
    channels-last flat index [K, C * B] of each output's source cell (N*H*W*C for empty bins)."""
    n_img, channels, height, width = input.shape
    regions = image.shape[0]
    total_bins = sum(n * n for n in levels)
    out = input.new_empty((regions, channels * total_bins))
    derive = mode == "max" and mapping == "paper"
    plan = make_plan(levels, derive)
    cl = input.permute(0, 2, 3, 1)
    argmax_out = None
    if mode == "max":
        row_sizes, col_sizes = window_sizes(
            height,
            width,
            plan,
            regions,
            mapping == "paper",
            TABLE_CELLS // max(1, n_img * channels),
        )
        table = RangeMaxTable(cl, row_sizes, col_sizes, with_argmax)
        if with_argmax:
            index_dtype = torch.int32 if cl.numel() < 2**31 - 1 else torch.int64
            argmax_out = torch.empty(out.shape, dtype=index_dtype, device=input.device)
    else:
        table = IntegralTable(cl, coordinate_dtype(input.device))
    if regions == 0:
        return out, argmax_out
    geometry = _Geometry(image, coords, spatial_scale, mapping, height, width)
    sources = {level.source for level in plan}
    step = _chunk_size(channels, plan)
    for lo in range(0, regions, step):
        hi = min(lo + step, regions)
        pooled: dict[int, Pooled] = {}
        for level in plan:
            n = level.n
            dests = [_output_view(out[lo:hi], off, n, channels) for off in level.offsets]
            arg_dests: list[Tensor | None] = [None] * len(dests)
            if argmax_out is not None:
                arg_dests = [_output_view(argmax_out[lo:hi], o, n, channels) for o in level.offsets]
            if isinstance(table, IntegralTable):
                corners, count = table.corner_rows(image[lo:hi], *geometry.bins(n, lo, hi))
                table.rect_mean(corners, count, dests[0])
            else:
                if level.source is not None:
                    result = table.coarsen(pooled[level.source], level.source // n)
                else:
                    corners = table.corner_rows(
                        image[lo:hi], *geometry.bins(n, lo, hi), may_be_empty=mapping == "round"
                    )
                    result = table.query(corners, (hi - lo, n, n))
                if n in sources:
                    pooled[n] = result
                table.write(result, dests[0], arg_dests[0])
            for dest, arg_dest in zip(dests[1:], arg_dests[1:], strict=True):
                dest.copy_(dests[0])
                if arg_dest is not None:
                    arg_dest.copy_(arg_dests[0])
    return out, argmax_out


def _max_backward(
    grad_out: Tensor, argmax: Tensor, shape: torch.Size, dtype: torch.dtype
) -> Tensor:
    n_img, channels, height, width = shape
    acc_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    acc = torch.zeros(n_img * height * width * channels + 1, dtype=acc_dtype, device=argmax.device)
    # One serial pass in (region, channel, bin) order: for a single level this is roi_pool's
    # accumulation order, so the gradient matches it bit for bit. The extra last slot takes the
    # (zero-valued) contributions of empty bins.
    acc.index_add_(0, argmax.reshape(-1), grad_out.reshape(-1).to(acc_dtype))
    grad = acc[:-1].view(n_img, height, width, channels).permute(0, 3, 1, 2)
    return grad.to(dtype)


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
    n_img, channels, height, width = shape
    device = image.device
    table = IntegralTable.shape_only((n_img, height, width, channels))
    acc = torch.zeros(
        (n_img * (height + 1) * (width + 1), channels),
        dtype=coordinate_dtype(device),
        device=device,
    )
    geometry = _Geometry(image, coords, spatial_scale, mapping, height, width)
    plan = make_plan(levels, derive=False)
    step = _chunk_size(channels, plan)
    for lo in range(0, image.shape[0], step):
        hi = min(lo + step, image.shape[0])
        for level in plan:
            edges = geometry.bins(level.n, lo, hi)
            corners, count = table.corner_rows(image[lo:hi], *edges)
            for off in level.offsets:
                grad = _output_view(grad_out[lo:hi], off, level.n, channels)
                table.backward_corners(grad, corners, count, acc)
    return table.input_grad(acc).permute(0, 3, 1, 2).to(dtype)


def roi_spp_function(
    name: str,
    forward: Callable[..., tuple[Tensor, Tensor | None]],
    max_backward: Callable[..., Tensor],
    avg_backward: Callable[..., Tensor],
) -> type[torch.autograd.Function]:
    """An autograd Function ``apply(input, image, coords, levels, spatial_scale, mode, mapping)``
    (gradient w.r.t. the feature map only) around one backend's kernels:
    ``forward(input, image, coords, levels, spatial_scale, mode, mapping, with_argmax) ->
    (out, argmax or None)``, ``max_backward(grad_out, argmax, shape, dtype)`` and
    ``avg_backward(grad_out, shape, dtype, image, coords, levels, spatial_scale, mapping)``."""

    def forward_(ctx, input, image, coords, levels, spatial_scale, mode, mapping):
        with_argmax = mode == "max" and ctx.needs_input_grad[0]
        out, argmax = forward(
            input, image, coords, levels, spatial_scale, mode, mapping, with_argmax
        )
        ctx.levels, ctx.spatial_scale, ctx.mode, ctx.mapping = levels, spatial_scale, mode, mapping
        ctx.input_meta = (input.shape, input.dtype, _memory_format(input))
        if argmax is not None:
            ctx.save_for_backward(argmax)
        elif mode == "avg":
            ctx.save_for_backward(image, coords)
        return out

    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        shape, dtype, memory_format = ctx.input_meta
        if ctx.mode == "max":
            (argmax,) = ctx.saved_tensors
            grad = max_backward(grad_out, argmax, shape, dtype)
        else:
            image, coords = ctx.saved_tensors
            grad = avg_backward(
                grad_out, shape, dtype, image, coords, ctx.levels, ctx.spatial_scale, ctx.mapping
            )
        return grad.contiguous(memory_format=memory_format), None, None, None, None, None, None

    namespace = {
        "__doc__": f"Autograd wrapper of the {name} kernels of ``roi_spp``.",
        "forward": staticmethod(forward_),
        "backward": staticmethod(backward),
    }
    return type(name, (torch.autograd.Function,), namespace)


#: The pure-PyTorch path: :func:`roi_spp_forward` and its backward passes.
RoISPPFunction = roi_spp_function("RoISPPFunction", roi_spp_forward, _max_backward, _avg_backward)


def _memory_format(x: Tensor) -> torch.memory_format:
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
