"""RoI spatial pyramid pooling: SPP over many regions of a batch of feature maps (detection)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sppnet.ops._checks import (
    check_backend,
    check_input,
    check_levels,
    check_mapping,
    check_mode,
    check_spatial_scale,
    coordinate_dtype,
    num_bins,
)
from sppnet.ops._roi_spp_autograd import RoISPPFunction

__all__ = ["RoISpatialPyramidPooling", "roi_spp"]

_FN = "roi_spp"


def _check_box_tensor(boxes: Tensor, what: str, columns: int, device: torch.device) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != columns:
        raise ValueError(f"{_FN}: {what} must have shape [K, {columns}], got {tuple(boxes.shape)}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(
            f"{_FN}: {what} must have a real floating or integer dtype, not {boxes.dtype}"
        )
    if boxes.device != device:
        raise ValueError(f"{_FN}: {what} is on {boxes.device} but input is on {device}")


def boxes_to_rois(
    boxes: Tensor | Sequence[Tensor],
    num_images: int,
    device: torch.device,
    check_values: bool = True,
) -> tuple[Tensor, Tensor]:
    """Validate ``boxes`` and split them into batch indices and corner coordinates.

    Args:
        boxes: Tensor[K, 5] ``(batch index, x1, y1, x2, y2)``, or a list of Tensor[L_i, 4]
            ``(x1, y1, x2, y2)``, one per image (its position is the batch index), in input-image
            pixels. Any real dtype.
        num_images: N, the batch size of the feature map.
        device: the feature map's device; the boxes must be on it.
        check_values: also check the values (whole batch indices in range, finite
            coordinates), which reads them back to the host: a device sync on a GPU. Shapes,
            dtypes and devices are always checked.

    Returns:
        ``(image, coords)``: Tensor[K] int64 batch indices and Tensor[K, 4] float64 (float32 on
        MPS) coordinates.

    Raises:
        TypeError: boxes is neither a tensor nor a list of tensors, or has a non-real dtype.
        ValueError: wrong shape or device, a batch index that is not an integer in [0, N), or a
            non-finite coordinate.
    """
    dtype = coordinate_dtype(device)
    if isinstance(boxes, Tensor):
        _check_box_tensor(boxes, "boxes", 5, device)
        rois = boxes.to(dtype)
        index = rois[:, 0]
        coords = rois[:, 1:]
        if check_values:
            _check_batch_index(index, num_images)
        image = index.long()
    elif isinstance(boxes, (list, tuple)):
        if len(boxes) > num_images:
            raise ValueError(
                f"{_FN}: boxes is a list of {len(boxes)} tensors but input holds only "
                f"{num_images} image(s) (batch index outside [0, {num_images}))"
            )
        parts = []
        for i, part in enumerate(boxes):
            if not isinstance(part, Tensor):
                raise TypeError(f"{_FN}: boxes[{i}] must be a Tensor, got {type(part).__name__}")
            _check_box_tensor(part, f"boxes[{i}]", 4, device)
            parts.append(part.to(dtype))
        coords = torch.cat(parts) if parts else torch.zeros((0, 4), dtype=dtype, device=device)
        sizes = torch.tensor([p.shape[0] for p in parts], dtype=torch.int64, device=device)
        image = torch.repeat_interleave(torch.arange(len(parts), device=device), sizes)
    else:
        raise TypeError(
            f"{_FN}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got "
            f"{type(boxes).__name__}"
        )
    if check_values and not bool(torch.isfinite(coords).all()):
        raise ValueError(f"{_FN}: box coordinates must be finite (found NaN or Inf)")
    return image, coords


def _check_batch_index(index: Tensor, num_images: int) -> None:
    if not bool(torch.all(index == torch.floor(index))):
        raise ValueError(f"{_FN}: boxes[:, 0] (batch index) must hold whole numbers")
    if index.numel() and not (float(index.min()) >= 0 and float(index.max()) < num_images):
        raise ValueError(
            f"{_FN}: boxes[:, 0] (batch index) must lie in [0, {num_images}), got values in "
            f"[{float(index.min()):g}, {float(index.max()):g}]"
        )


def roi_spp(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    levels: Sequence[int] = (4, 2, 1),
    spatial_scale: float = 1 / 16,
    mode: str = "max",
    mapping: str = "paper",
    backend: str = "auto",
    check_boxes: bool = True,
) -> Tensor:
    """Spatial pyramid pooling of each region of a batch of feature maps (SPP-net detection).

    Each region is mapped onto the feature map, split into ``n x n`` bins for every pyramid level
    ``n`` and each bin pooled per channel. Differentiable w.r.t. ``input``: max sends each output's
    gradient to its arg-max cell, avg spreads it evenly over the bin.

    **mapping="paper"** (SPP-net). With ``s = spatial_scale`` (``1/S`` for stride ``S``) and every
    product computed in float64: a box's left/top edge maps to cell ``floor(x1*s) + 1``, its
    right/bottom edge to cell ``ceil(x2*s) - 1`` (inclusive), both clipped to ``[0, W-1]``
    (columns) and ``[0, H-1]`` (rows). Each axis on its own: where the first cell comes out after
    the last, both become the cell nearest the box centre, ``floor((x1+x2)/2*s + 0.5)``, clipped.
    Inside that window of ``h`` rows starting at ``r0``, bin ``i`` of level ``n`` covers rows
    ``r0 + floor(i*h/n) .. r0 + ceil((i+1)*h/n) - 1`` (integer arithmetic; same for columns), the
    rule of :func:`spp`. No bin is ever empty, so boxes inverted, degenerate or far outside the map
    still pool real cells.

    **mapping="round"** is ``torchvision.ops.roi_pool``'s rule: corners ``round(x*s)`` (half away
    from zero), extent forced to >= 1 cell, float bin edges ``floor(i*extent/n)``,
    ``ceil((i+1)*extent/n)`` computed in the input's dtype (float32 for 16-bit inputs), bins
    clipped to the map, an empty bin gives 0. For one level ``n`` and ``mode="max"`` the result
    equals ``roi_pool(input, boxes, n, spatial_scale)`` bit for bit, forward and gradient, on
    finite inputs (``roi_pool`` ignores NaN; this op propagates it).

    Ties in max mode send the gradient to the bin's first maximal cell in row-major order, as
    ``roi_pool`` does (levels derived from a finer one included). NaN or Inf in ``input``
    propagate: a bin holding a NaN pools to NaN (max and avg), a bin holding +Inf max-pools to
    +Inf; avg of +Inf and -Inf is NaN.

    Memory: besides the output, max pooling holds a per-call range-max table of the map: with
    power-of-two windows about ``N*C*H*W * (1 + log2 H) * (1 + log2 W)`` values for the round
    mapping, fewer for the paper mapping (its windows stop at the longest bin of the finest level
    read); exact window sizes are only chosen while the table stays under ``2**25`` values
    (``TABLE_CELLS``). With a gradient the table holds int64 keys (float64 input: values plus
    an index table) and an int32 index (int64 for maps of 2**31 or more elements) is saved per
    output value. Avg holds ``N*C*(H+1)*(W+1)`` float64 values. Regions are pooled in chunks of
    about ``2**21`` output values (``CHUNK_ELEMENTS`` in :mod:`sppnet.ops._roi_spp_autograd`),
    so the working memory beyond that is about ``8 * 2**21`` elements whatever K is.

    Args:
        input: Tensor[N, C, H, W], floating (float32, float64, float16, bfloat16), any H, W >= 1,
            contiguous or channels_last, on any device.
        boxes: Tensor[K, 5] ``(batch index, x1, y1, x2, y2)`` or a list of N (or fewer)
            Tensor[L_i, 4] ``(x1, y1, x2, y2)``, in input-image pixels, exactly as
            ``torchvision.ops.roi_pool`` takes them. K = 0 is valid.
        levels: pyramid levels, any non-empty sequence of positive ints in any order; default
            ``(4, 2, 1)`` (21 bins); SPP-net's detector used ``(6, 3, 2, 1)`` (50 bins).
        spatial_scale: feature cells per input pixel, ``1/S`` (> 0).
        mode: ``"max"`` or ``"avg"``.
        mapping: ``"paper"`` or ``"round"`` (see above).
        backend: ``"auto"``, ``"torch"``, ``"numba"`` or ``"triton"`` (see
            :func:`resolve_backend`); all give the same values and gradients (bit for bit but for
            the documented exceptions, see docs/ops.md).
        check_boxes: check the boxes' values (batch indices, finite coordinates). The check reads
            them back to the host, a device sync on a GPU: callers that made the boxes
            themselves (the detector) turn it off. Shapes, dtypes and devices are always checked.

    Returns:
        Tensor[K, C * sum(n*n for n in levels)] of ``input``'s dtype: levels in the given order,
        each level's ``(C, n, n)`` block flattened row-major (channel, row, column).

    Raises:
        TypeError, ValueError: for bad input, naming the argument (see the checks in
            :mod:`sppnet.ops._checks` and :func:`boxes_to_rois`).
    """
    check_input(input, _FN)
    levels = check_levels(levels, _FN)
    spatial_scale = check_spatial_scale(spatial_scale, _FN)
    mode = check_mode(mode, _FN)
    mapping = check_mapping(mapping, _FN)
    kernel = resolve_backend(input, check_backend(backend, _FN))
    image, coords = boxes_to_rois(boxes, input.shape[0], input.device, check_boxes)
    if mapping == "round":
        # roi_pool does its arithmetic in the input's dtype (its `T`); 16-bit inputs use float32.
        arith = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
        coords = coords.to(arith)
    if kernel == "numba":
        from sppnet.ops._roi_spp_numba import RoISPPNumbaFunction

        function = RoISPPNumbaFunction
    elif kernel == "triton":
        from sppnet.ops._roi_spp_triton import RoISPPTritonFunction

        function = RoISPPTritonFunction
    else:
        function = RoISPPFunction
    args = (input, image, coords, levels, spatial_scale, mode, mapping)
    device_type = input.device.type
    if _autocast_enabled(device_type):
        # Autocast policy: pool in the map's own dtype, whatever autocast would pick for the ops
        # inside. Max is exact in any dtype; avg sums in a float64 (MPS: float32) integral image.
        with torch.autocast(device_type, enabled=False):
            return function.apply(*args)
    return function.apply(*args)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type autocast does not know (e.g. meta)
        return False


def resolve_backend(input: Tensor, backend: str) -> str:
    """The kernel that pools ``input``: ``"torch"``, ``"numba"`` or ``"triton"``.

    ``"numba"`` is the fused CPU kernel (:mod:`sppnet.ops._roi_spp_numba`): CPU float32 and
    float64 tensors only. ``"triton"`` is the Triton kernel (:mod:`sppnet.ops._roi_spp_triton`):
    CUDA float32, float16, bfloat16 and float64 tensors, or CPU ones under Triton's interpreter
    (``TRITON_INTERPRET=1``), with triton importable. Asking for either with anything else raises
    ValueError. ``"torch"`` is the pure-PyTorch path, for every device and dtype. ``"auto"``, when
    the call is not being traced, scripted or compiled (the kernels are opaque to
    ``torch.jit``/``torch.compile``), picks triton for a CUDA input it supports, numba for a CPU
    float32 or float64 input when numba is importable, and torch otherwise (MPS, CPU float16 and
    bfloat16, CUDA without triton).

    Raises:
        ValueError: ``backend="numba"`` or ``"triton"`` for an input that kernel cannot pool.
    """
    from sppnet.ops._roi_spp_triton import triton_available, triton_supports

    if backend == "torch":
        return "torch"
    if backend == "triton":
        if not triton_supports(input):
            missing = "" if triton_available() else " (triton is not installed)"
            raise ValueError(
                f"{_FN}: backend='triton' needs a CUDA float32, float16, bfloat16 or float64 "
                f"input{missing}, got {input.dtype} on {input.device} (CPU tensors only under "
                "TRITON_INTERPRET=1); use backend='torch' or 'auto'"
            )
        return "triton"
    if backend == "auto" and input.device.type == "cuda":
        return "triton" if triton_supports(input) and not _is_tracing() else "torch"
    supported = input.device.type == "cpu" and input.dtype in (torch.float32, torch.float64)
    if backend == "numba":
        if not supported:
            raise ValueError(
                f"{_FN}: backend='numba' needs a CPU float32 or float64 input, got "
                f"{input.dtype} on {input.device}; use backend='torch' or 'auto'"
            )
        return "numba"
    if not supported or _is_tracing() or importlib.util.find_spec("numba") is None:
        return "torch"
    return "numba"


def _is_tracing() -> bool:
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)()
    return compiling or torch.jit.is_tracing() or torch.jit.is_scripting()


class RoISpatialPyramidPooling(nn.Module):
    """Module form of :func:`roi_spp`; see there for the exact semantics.

    Args:
        levels: pyramid levels, default ``(4, 2, 1)``.
        spatial_scale: feature cells per input pixel, ``1/S``.
        mode: ``"max"`` or ``"avg"``.
        mapping: ``"paper"`` or ``"round"``.
        backend: ``"auto"``, ``"torch"``, ``"numba"`` or ``"triton"`` (see
            :func:`resolve_backend`).
        check_boxes: as :func:`roi_spp`'s.
    """

    def __init__(
        self,
        levels: Sequence[int] = (4, 2, 1),
        spatial_scale: float = 1 / 16,
        mode: str = "max",
        mapping: str = "paper",
        backend: str = "auto",
        check_boxes: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.check_boxes = bool(check_boxes)
        self.levels = check_levels(levels, name)
        self.spatial_scale = check_spatial_scale(spatial_scale, name)
        self.mode = check_mode(mode, name)
        self.mapping = check_mapping(mapping, name)
        self.backend = check_backend(backend, name)
        # The kernel the latest forward call ran (what "auto" resolved to), shown by repr.
        self.last_backend: str | None = None

    def output_size(self, channels: int) -> int:
        """Length of each region's vector for a ``channels``-channel map: ``C * sum(n*n)``."""
        return channels * num_bins(self.levels)

    def forward(self, input: Tensor, boxes: Tensor | Sequence[Tensor]) -> Tensor:
        self.last_backend = resolve_backend(input, self.backend)
        return roi_spp(
            input,
            boxes,
            self.levels,
            self.spatial_scale,
            self.mode,
            self.mapping,
            self.backend,
            self.check_boxes,
        )

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, spatial_scale={self.spatial_scale:g}, mode={self.mode!r}, "
            f"mapping={self.mapping!r}, backend={self.backend!r}, bins={num_bins(self.levels)}"
            + ("" if self.last_backend is None else f", last_backend={self.last_backend!r}")
        )
