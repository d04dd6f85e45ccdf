"""The SPP-net classifier: conv trunk -> spatial pyramid pooling -> fc6 -> fc7 -> classifier.

Images of any size go in: the SPP layer turns a ``C x H' x W'`` map of any ``H', W'`` into
``C * sum(n * n)`` values, so one set of fc weights serves every input size. A list of images of
different sizes is run image by image (equal sizes batched together): each keeps its own size,
nothing is resized, cropped or padded.

:class:`FixedInputClassifier` is the no-SPP control of the paper: the same trunk, but every input
is first warped (bilinear resize) to one fixed size so the last map has a fixed grid that is
flattened, as a fixed-input network requires.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet.models.backbones import Backbone, create_backbone
from sppnet.ops import SpatialPyramidPooling

__all__ = ["FixedInputClassifier", "SPPNetClassifier", "build_classifier", "imagenet_classes"]

Images = Tensor | Sequence[Tensor]
Features = Tensor | list[Tensor]


@functools.cache
def _imagenet_classes() -> tuple[str, ...]:
    text = (
        importlib.resources.files("sppnet.models")
        .joinpath("imagenet_classes.txt")
        .read_text(encoding="utf-8")
    )
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected 1000")
    return names


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in torchvision's index order (bundled with sppnet,
    taken from torchvision's weights metadata)."""
    return list(_imagenet_classes())


def _fc_block(in_features: int, fc_dims: Sequence[int], dropout: float) -> tuple[nn.Module, int]:
    """fc6 -> ReLU -> Dropout -> fc7 -> ReLU (the dropout before the last layer belongs to the
    classifier); empty ``fc_dims`` gives an identity."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, width in enumerate(fc_dims):
        number = 6 + index
        layers[f"fc{number}"] = nn.Linear(in_features, int(width))
        layers[f"relu{number}"] = nn.ReLU(inplace=True)
        if index < len(fc_dims) - 1:
            layers[f"drop{number}"] = nn.Dropout(dropout)
        in_features = int(width)
    return (nn.Sequential(layers) if layers else nn.Identity()), in_features


def _check_common(num_classes: int, fc_dims: Sequence[int], dropout: float, who: str) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{who}: num_classes must be a positive int, got {num_classes!r}")
    if any(not isinstance(d, int) or d < 1 for d in fc_dims):
        raise ValueError(f"{who}: fc_dims must be positive ints, got {tuple(fc_dims)!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{who}: dropout must be in [0, 1), got {dropout!r}")


def _check_image(image: Tensor, who: str, index: int | None = None) -> None:
    where = "input" if index is None else f"image {index}"
    if not isinstance(image, Tensor):
        raise TypeError(f"{who}: {where} must be a Tensor, got {type(image).__name__}")
    expected = 3 if index is not None else 4
    if image.dim() != expected or image.shape[-3] != 3:
        shape = "[3, H, W]" if index is not None else "[N, 3, H, W]"
        raise ValueError(f"{who}: {where} must have shape {shape}, got {tuple(image.shape)}")


class SPPNetClassifier(nn.Module):
    """Trunk -> SPP -> fc6 -> fc7 -> classifier (``Dropout`` + ``Linear``).

    Args:
        backbone: a :class:`Backbone` (see :func:`sppnet.models.create_backbone`).
        num_classes: number of output logits.
        levels: pyramid levels; ``(6, 3, 2, 1)`` (50 bins) is the paper's.
        mode: ``"max"`` (the paper's) or ``"avg"``.
        fc_dims: widths of fc6, fc7 (``(4096, 4096)`` in the paper); ``()`` puts the classifier
            directly on the pooled vector (the shape of torchvision's MobileNetV2 head).
        dropout: dropout probability after fc6 and before the classifier.

    Shapes: ``forward(Tensor[N, 3, H, W] float normalised)`` or ``forward([Tensor[3, H_i, W_i],
    ...])`` -> ``Tensor[N, num_classes]`` logits. Inputs must be at least
    ``backbone.min_input_size`` on each side.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        levels: Sequence[int] = (6, 3, 2, 1),
        mode: str = "max",
        fc_dims: Sequence[int] = (4096, 4096),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_common(num_classes, fc_dims, dropout, "SPPNetClassifier")
        if not isinstance(backbone, Backbone):
            raise TypeError(f"SPPNetClassifier: backbone must be a Backbone, got {backbone!r}")
        self.backbone = backbone
        self.spp = SpatialPyramidPooling(levels, mode)
        self.fc, self.num_features = _fc_block(
            self.spp.output_size(backbone.out_channels), fc_dims, dropout
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.num_features, num_classes)
        )
        self.num_classes = num_classes
        self.config: dict[str, Any] = {
            "kind": "spp",
            "backbone": backbone.name,
            "num_classes": num_classes,
            "levels": list(self.spp.levels),
            "mode": self.spp.mode,
            "fc_dims": [int(d) for d in fc_dims],
            "dropout": float(dropout),
        }

    @classmethod
    def from_imagenet_backbone(cls, backbone: Backbone) -> SPPNetClassifier:
        """The pretrained ImageNet classifier: ``backbone`` (built with ImageNet weights, e.g.
        ``create_backbone("mobilenet_v2", weights="imagenet")``), one-level average SPP (global
        average pooling) and the backbone's own ImageNet head. For ``mobilenet_v2`` its logits are
        torchvision's ``mobilenet_v2`` logits."""
        head = backbone.imagenet_head()
        dropout, linear = head[0], head[1]
        model = cls(
            backbone,
            linear.out_features,
            levels=(1,),
            mode="avg",
            fc_dims=(),
            dropout=float(dropout.p),
        )
        model.classifier.load_state_dict(head.state_dict())
        return model

    def forward_features(self, images: Images) -> Features:
        """Trunk maps: ``Tensor[N, C, H', W']`` for a batch, a list of ``Tensor[C, H'_i, W'_i]``
        for a list of images (each run at its own size; equal sizes share one trunk call)."""
        if isinstance(images, Tensor):
            _check_image(images, "SPPNetClassifier")
            return self.backbone(images)
        if not isinstance(images, Sequence) or len(images) == 0:
            raise TypeError("SPPNetClassifier: expected a Tensor[N, 3, H, W] or a non-empty list")
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            _check_image(image, "SPPNetClassifier", index)
            groups.setdefault(tuple(image.shape[-2:]), []).append(index)
        maps: list[Tensor | None] = [None] * len(images)
        for indices in groups.values():
            batch = self.backbone(torch.stack([images[i] for i in indices]))
            for index, feature in zip(indices, batch, strict=True):
                maps[index] = feature
        return maps  # type: ignore[return-value]

    def pool(self, features: Features) -> Tensor:
        """SPP of the trunk maps: ``Tensor[N, C * bins]``."""
        if isinstance(features, Tensor):
            return self.spp(features)
        return torch.cat([self.spp(feature.unsqueeze(0)) for feature in features])

    def forward_head(self, features: Features, pre_logits: bool = False) -> Tensor:
        """SPP -> fc6 -> fc7 (``pre_logits=True`` stops here: ``Tensor[N, num_features]``) ->
        classifier: ``Tensor[N, num_classes]``."""
        x = self.fc(self.pool(features))
        return x if pre_logits else self.classifier(x)

    def forward(self, images: Images) -> Tensor:
        return self.forward_head(self.forward_features(images))


class FixedInputClassifier(nn.Module):
    """The no-SPP control: warp every input to ``input_size x input_size`` (bilinear, antialiased
    when shrinking), run the trunk, flatten its fixed ``C x h x w`` map, fc6 -> fc7 -> classifier.

    Args: as :class:`SPPNetClassifier`, with ``input_size`` (pixels) instead of ``levels``/``mode``.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        input_size: int,
        fc_dims: Sequence[int] = (4096, 4096),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_common(num_classes, fc_dims, dropout, "FixedInputClassifier")
        if not isinstance(input_size, int) or input_size < backbone.min_input_size:
            raise ValueError(
                f"FixedInputClassifier: input_size must be an int >= the backbone's minimum "
                f"{backbone.min_input_size}, got {input_size!r}"
            )
        self.backbone = backbone
        self.input_size = input_size
        height, width = backbone.feature_size(input_size, input_size)
        self.fc, self.num_features = _fc_block(
            backbone.out_channels * height * width, fc_dims, dropout
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.num_features, num_classes)
        )
        self.num_classes = num_classes
        self.config: dict[str, Any] = {
            "kind": "fixed",
            "backbone": backbone.name,
            "num_classes": num_classes,
            "input_size": input_size,
            "fc_dims": [int(d) for d in fc_dims],
            "dropout": float(dropout),
        }

    def warp(self, images: Images) -> Tensor:
        """Resize every image to ``input_size`` square: ``Tensor[N, 3, s, s]``."""
        size = (self.input_size, self.input_size)
        if isinstance(images, Tensor):
            _check_image(images, "FixedInputClassifier")
            batch = [images]
        else:
            for index, image in enumerate(images):
                _check_image(image, "FixedInputClassifier", index)
            batch = [image.unsqueeze(0) for image in images]
        warped = [
            x
            if tuple(x.shape[-2:]) == size
            else F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            for x in batch
        ]
        return torch.cat(warped)

    def forward_features(self, images: Images) -> Tensor:
        return self.backbone(self.warp(images))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.fc(features.flatten(1))
        return x if pre_logits else self.classifier(x)

    def forward(self, images: Images) -> Tensor:
        return self.forward_head(self.forward_features(images))


def build_classifier(config: dict[str, Any], weights: Any = None) -> nn.Module:
    """Rebuild a classifier from its ``config`` (as stored by training checkpoints); the
    backbone is created with ``weights`` (usually ``None``: the checkpoint holds them all)."""
    kind = config.get("kind")
    backbone = create_backbone(config["backbone"], weights=weights)
    common = {
        "num_classes": int(config["num_classes"]),
        "fc_dims": tuple(config["fc_dims"]),
        "dropout": float(config["dropout"]),
    }
    if kind == "spp":
        return SPPNetClassifier(
            backbone, levels=tuple(config["levels"]), mode=config["mode"], **common
        )
    if kind == "fixed":
        return FixedInputClassifier(backbone, input_size=int(config["input_size"]), **common)
    raise ValueError(f"build_classifier: unknown classifier kind {kind!r} (expected spp or fixed)")
