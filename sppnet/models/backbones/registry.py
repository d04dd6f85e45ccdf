"""A small registry of backbones, in the manner of timm's ``create_model``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sppnet.models.backbones.base import Backbone

__all__ = ["create_backbone", "list_backbones", "register_backbone"]

WeightsArg = str | os.PathLike[str] | None
_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator: register ``fn(weights=None, **kwargs) -> Backbone`` under ``name``."""

    def decorator(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"register_backbone: {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_REGISTRY)


def create_backbone(name: str, weights: WeightsArg = None, **kwargs: Any) -> Backbone:
    """Build the backbone ``name``.

    Args:
        name: one of :func:`list_backbones` (``zf5``, ``alexnet``, ``vgg16``, ``mobilenet_v2``,
            ``resnet50``, ``small``).
        weights: ``None`` (random initialisation), a local checkpoint path, or ``"imagenet"``
            (resolved offline by :func:`sppnet.models.weights.resolve_weights`; never downloads).
        **kwargs: family options (e.g. ``output_stride=16`` for ``mobilenet_v2``).

    Raises:
        ValueError: unknown name.
        sppnet.models.weights.WeightsNotFoundError: ``weights`` could not be resolved.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"create_backbone: unknown backbone {name!r}; known: {list_backbones()}")
    return _REGISTRY[name](weights=weights, **kwargs)
