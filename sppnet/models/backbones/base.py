"""The :class:`Backbone` contract and the geometry (stride, offset, minimum size) of a conv trunk.

Geometry is derived, not typed in: every family lists the layers on its main path (the convs and
pools an input pixel crosses, in order; residual shortcuts are skipped because in these networks
they have the same stride and centre as the path they bypass) and :func:`trunk_geometry` folds
them. Pixel coordinates here are *pixel indices*: pixel column ``i`` has its centre at ``i`` (the
box contract's continuous coordinates put that centre at ``i + 0.5``).

For one layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` (effective kernel
``e = d * (k - 1) + 1``), output cell ``j`` is centred on input cell ``j * s - p + (e - 1) / 2``.
Composing the layers gives ``centre(x') = offset + stride * x'`` for trunk cell ``x'``, with

    stride = prod(s_l),    offset = sum_l (prod_{m<l} s_m) * ((e_l - 1) / 2 - p_l).

With every layer padded ``floor(k / 2)`` (odd kernels), each term is zero and ``offset = 0``: the
paper's "cell x' is centred on pixel S x'" (ZF-5, MobileNetV2, ResNet-50). A 2x2/2 max pool without
padding (VGG) adds ``0.5 * s_before``, AlexNet's unpadded 3x3/2 pools and 11x11/4 conv add more.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "LayerGeometry",
    "TrunkGeometry",
    "main_path_layers",
    "trunk_geometry",
]

#: torchvision's ImageNet normalisation, for RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerGeometry:
    """One conv or pool along a trunk's main path (square kernels, symmetric padding)."""

    kernel: int
    stride: int
    padding: int
    dilation: int = 1

    @property
    def effective_kernel(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    def output_size(self, size: int) -> int:
        """Output length for an input of ``size`` cells (0 when the layer cannot run)."""
        span = size + 2 * self.padding - self.effective_kernel
        return span // self.stride + 1 if span >= 0 else 0


@dataclass(frozen=True)
class TrunkGeometry:
    """Total ``stride``, ``offset`` (pixel index of cell 0's receptive-field centre) and
    ``min_input_size`` (smallest side for which every layer yields at least one cell)."""

    stride: int
    offset: float
    min_input_size: int
    layers: tuple[LayerGeometry, ...]

    def output_size(self, size: int) -> int:
        """Feature-map length for an input side of ``size`` pixels (0 if too small)."""
        for layer in self.layers:
            size = layer.output_size(size)
            if size <= 0:
                return 0
        return size


def _pair_value(value: int | Sequence[int], what: str, module: nn.Module) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"trunk_geometry: non-square {what}={tuple(value)} in {module}")
    return int(value[0])


def main_path_layers(
    module: nn.Module, skip: Iterable[str] = ("downsample",)
) -> list[LayerGeometry]:
    """The convs and pools of ``module`` in registration order, leaving out any sub-module whose
    name contains one of ``skip`` (ResNet's 1x1 shortcut convs). Adaptive pools are refused."""
    skip = tuple(skip)
    layers = []
    for name, child in module.named_modules():
        if any(part in skip for part in name.split(".")):
            continue
        if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            raise ValueError(f"main_path_layers: adaptive pool {name!r} has no fixed geometry")
        if isinstance(child, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            if getattr(child, "ceil_mode", False):
                raise ValueError(f"main_path_layers: ceil_mode pooling at {name!r} is unsupported")
            if isinstance(child, nn.Conv2d) and child.padding_mode != "zeros":
                raise ValueError(f"main_path_layers: padding_mode at {name!r} must be 'zeros'")
            padding = child.padding
            if isinstance(padding, str):
                raise ValueError(f"main_path_layers: string padding {padding!r} at {name!r}")
            layers.append(
                LayerGeometry(
                    kernel=_pair_value(child.kernel_size, "kernel_size", child),
                    stride=_pair_value(child.stride, "stride", child),
                    padding=_pair_value(padding, "padding", child),
                    dilation=_pair_value(getattr(child, "dilation", 1), "dilation", child),
                )
            )
    return layers


def trunk_geometry(layers: Sequence[LayerGeometry]) -> TrunkGeometry:
    """Fold a main path into total stride, cell-0 centre offset and minimum input side.

    ``min_input_size`` is the larger of the smallest side that every layer accepts and the total
    stride: below one stride the single feature cell would look mostly at zero padding.
    """
    stride, offset = 1, 0.0
    for layer in layers:
        offset += stride * ((layer.effective_kernel - 1) / 2 - layer.padding)
        stride *= layer.stride
    geometry = TrunkGeometry(stride=stride, offset=offset, min_input_size=1, layers=tuple(layers))
    smallest = 1
    while geometry.output_size(smallest) < 1:
        smallest += 1
    return TrunkGeometry(
        stride=stride,
        offset=offset,
        min_input_size=max(smallest, stride),
        layers=tuple(layers),
    )


def _is_tracing() -> bool:
    """True under ``torch.jit.trace`` / ONNX export / ``torch.compile``, where the eager input
    checks would bake the example's shape into the graph."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return torch.jit.is_tracing() or bool(is_compiling is not None and is_compiling())


class Backbone(nn.Module):
    """A conv trunk: ``forward(Tensor[N, 3, H, W] float, normalised) -> Tensor[N, C, H', W']``.

    Attributes:
        name: the registry name.
        out_channels: ``C``.
        stride: total stride ``S`` (input pixels per feature cell).
        offset: pixel index of the receptive-field centre of feature cell 0; cell ``x'`` is
            centred on pixel ``offset + S * x'`` (see the module docstring).
        mean, std: per-channel normalisation for RGB in [0, 1] (``(x - mean) / std``).
        min_input_size: smallest accepted image side; smaller inputs raise ``ValueError``.
        geometry: the :class:`TrunkGeometry` these numbers come from.
    """

    def __init__(
        self,
        name: str,
        body: nn.Module,
        out_channels: int,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        geometry: TrunkGeometry | None = None,
        imagenet_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.out_channels = int(out_channels)
        self.geometry = geometry if geometry is not None else trunk_geometry(main_path_layers(body))
        self.stride = self.geometry.stride
        self.offset = self.geometry.offset
        self.min_input_size = self.geometry.min_input_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # Kept outside the module tree on purpose: the head is not part of the trunk's
        # parameters or state_dict; imagenet_head() hands out a fresh copy.
        self._imagenet_head = (imagenet_head,) if imagenet_head is not None else ()

    def feature_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H', W')`` of the feature map for an ``H x W`` input (0 when too small)."""
        return self.geometry.output_size(height), self.geometry.output_size(width)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``x`` is a float ``[N, 3, H, W]`` batch with
        ``H, W >= min_input_size``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: expected a Tensor[N, 3, H, W], got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected a Tensor[N, 3, H, W], got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{self.name}: expected a float image batch (normalised), got dtype {x.dtype}; "
                "convert uint8 images with x.float() / 255 and normalise with mean/std"
            )
        height, width = x.shape[-2:]
        if min(height, width) < self.min_input_size:
            raise ValueError(
                f"{self.name}: input {height}x{width} is smaller than the minimum side "
                f"{self.min_input_size} px; resize the image up first"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _is_tracing():
            self.check_input(x)
        return self.body(x)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float RGB ``[..., 3, H, W]`` -> float normalised with mean/std."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not images.is_floating_point():
            raise TypeError(f"{self.name}.normalize: expected uint8 or float, got {images.dtype}")
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device)[:, None, None]
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device)[:, None, None]
        return (images - mean) / std

    def has_imagenet_head(self) -> bool:
        return bool(self._imagenet_head)

    def imagenet_head(self) -> nn.Module:
        """A fresh copy of the pretrained ImageNet classifier head that goes on top of this
        trunk after global average pooling: ``Tensor[N, C] -> Tensor[N, 1000]`` logits.

        Raises:
            ValueError: the trunk was built without ImageNet weights, or its architecture has no
                head that fits the trunk's output (only ``mobilenet_v2`` does).
        """
        if not self._imagenet_head:
            raise ValueError(
                f"{self.name}: no ImageNet classifier head available (it exists only for "
                "mobilenet_v2 built with ImageNet weights, e.g. "
                "create_backbone('mobilenet_v2', weights='imagenet'))"
            )
        head = copy.deepcopy(self._imagenet_head[0])
        return head.to(next(self.parameters()).device)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, out_channels={self.out_channels}, stride={self.stride}, "
            f"offset={self.offset:g}, min_input_size={self.min_input_size}"
        )
