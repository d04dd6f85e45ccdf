"""ONNX export of the SPP-net classifier with dynamic batch, height and width.

ONNX has no adaptive pooling with an output grid other than 1 x 1, so the exported graph computes
the SPP bins explicitly: for a map of side ``a`` and level ``n``, bin ``i`` spans
``[floor(i a / n), ceil((i + 1) a / n))`` (the paper's rule, PyTorch's adaptive pooling), with
``a`` read from the input's shape at run time. The values are those of
:func:`sppnet.ops.spp`; the graph works for any input at least the backbone's minimum size.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from sppnet.models.classifier import SPPNetClassifier

__all__ = ["SlicedSpatialPyramidPooling", "export_onnx"]


class SlicedSpatialPyramidPooling(nn.Module):
    """:class:`sppnet.ops.SpatialPyramidPooling` written with slices and reductions whose bounds
    are computed from the input's shape, so that tracers keep them symbolic.

    ``Tensor[N, C, H, W] -> Tensor[N, C * sum(n * n)]`` in the layout of :func:`sppnet.ops.spp`
    (per level: channel-major, then bin row, then bin column).
    """

    def __init__(self, levels: Sequence[int], mode: str) -> None:
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(f"SlicedSpatialPyramidPooling: mode must be max or avg, got {mode!r}")
        self.levels = tuple(int(n) for n in levels)
        self.mode = mode

    def _reduce(self, region: Tensor) -> Tensor:
        return region.amax(dim=(2, 3)) if self.mode == "max" else region.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        outputs = []
        for n in self.levels:
            if n == 1:
                outputs.append(self._reduce(x))
                continue
            bins = []
            for i in range(n):
                # ceil(a / n) as (a + n - 1) // n: every operand stays non-negative, so the
                # exported floor division cannot turn into truncation of a negative number.
                top, bottom = (i * height) // n, ((i + 1) * height + n - 1) // n
                for j in range(n):
                    left, right = (j * width) // n, ((j + 1) * width + n - 1) // n
                    bins.append(self._reduce(x[:, :, top:bottom, left:right]))
            outputs.append(torch.stack(bins, dim=2).flatten(1))
        return torch.cat(outputs, dim=1)


class _Exportable(nn.Module):
    """The classifier with the sliced SPP and without the eager-mode input checks."""

    def __init__(self, model: SPPNetClassifier) -> None:
        super().__init__()
        model = copy.deepcopy(model).eval()
        self.body = model.backbone.body
        self.spp = SlicedSpatialPyramidPooling(model.spp.levels, model.spp.mode)
        self.fc = model.fc
        self.classifier = model.classifier

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.fc(self.spp(self.body(images))))


def export_onnx(
    model: SPPNetClassifier,
    path: str | os.PathLike[str],
    *,
    example_size: tuple[int, int] = (224, 224),
    opset_version: int = 18,
    dynamo: bool = False,
) -> Path:
    """Export ``model`` (eval mode) to ONNX with input ``images`` Tensor[N, 3, H, W] float32
    (normalised) and output ``logits`` Tensor[N, num_classes]; N, H and W are dynamic.

    Args:
        model: an :class:`SPPNetClassifier`.
        path: the ``.onnx`` file to write (written atomically).
        example_size: ``(H, W)`` of the example input used for tracing (any valid size).
        opset_version: ONNX opset.
        dynamo: use the ``torch.export``-based exporter instead of the TorchScript tracer. Both
            give the same graph semantics; the tracer (default) exports in about a second, the
            ``torch.export`` path takes tens of seconds on a CPU.

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``model`` is not an :class:`SPPNetClassifier`.
        ValueError: ``example_size`` is below the backbone's minimum input side.
    """
    from sppnet.utils.atomic import atomic_write_bytes

    if not isinstance(model, SPPNetClassifier):
        raise TypeError(f"export_onnx: expected an SPPNetClassifier, got {type(model).__name__}")
    minimum = model.backbone.min_input_size
    if min(example_size) < minimum:
        raise ValueError(f"export_onnx: example_size {example_size} is below the minimum {minimum}")
    wrapper = _Exportable(model).cpu().eval()
    example = torch.zeros(2, 3, *example_size)
    path = Path(path)
    if dynamo:
        program = torch.onnx.export(
            wrapper,
            (example,),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes={
                "images": {
                    0: torch.export.Dim("batch", min=1),
                    2: torch.export.Dim("height", min=minimum),
                    3: torch.export.Dim("width", min=minimum),
                }
            },
            opset_version=opset_version,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        atomic_write_bytes(path, program.model_proto.SerializeToString())
        return path
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation; it is still the fast exact path.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
            opset_version=opset_version,
            dynamo=False,
        )
    atomic_write_bytes(path, buffer.getvalue())
    return path
