"""Shared by the families taken from torchvision: build the architecture with ``weights=None``
(torchvision never downloads then), resolve our ``weights`` offline, load strictly."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision.models import WeightsEnum

from sppnet.models.backbones.registry import WeightsArg
from sppnet.models.weights import load_checkpoint, load_state_dict_strict, resolve_weights


def imagenet_filenames(weights_enum: type[WeightsEnum]) -> list[str]:
    """torchvision's checkpoint file names for the ImageNet-1k classifiers of an architecture
    (feature-only variants such as VGG16's ``IMAGENET1K_FEATURES`` are left out)."""
    return [
        member.url.rsplit("/", 1)[-1]
        for member in weights_enum
        if member.meta.get("categories") is not None and len(member.meta["categories"]) == 1000
    ]


def build_torchvision(
    name: str,
    builder: Callable[..., nn.Module],
    weights_enum: type[WeightsEnum],
    weights: WeightsArg,
) -> tuple[nn.Module, bool]:
    """``(model, loaded)``: the full torchvision model, with the resolved checkpoint loaded
    strictly when ``weights`` is not ``None`` (``loaded`` says which)."""
    model = builder(weights=None)
    path = resolve_weights(name, weights, imagenet_filenames(weights_enum))
    if path is None:
        return model, False
    load_state_dict_strict(model, load_checkpoint(path), path)
    return model, True
