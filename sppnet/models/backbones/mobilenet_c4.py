"""A trunk for detecting small objects cheaply: MobileNetV2 cut at its stride-16 stage ("C4").

The registry's ``mobilenet_v2`` is all of torchvision's ``features``: stride 32 and 1280 channels
(or stride 16 by dilating the last stage, still 1280 channels). For SPP-net detection both are
costly where SPP-net spends its time, fc6: with levels (6, 3, 2, 1) the pooled vector is
``C * 50`` long, so 1280 channels give 64,000 inputs per window. The C4 cut (detectron2's name
for the stride-16 stage of a classification network) keeps ``features[:14]``, up to the last
96-channel block: stride 16, 96 channels, a 4,800-long pooled vector, and the same ImageNet
weights for those blocks. Digits of 24 px still cover 1.5 cells at stride 16 (0.75 at 32).

Registered as ``mobilenet_v2_c4`` when :mod:`sppnet.models.backbones` is imported.
"""

from __future__ import annotations

import torchvision

from sppnet.models.backbones._torchvision import build_torchvision
from sppnet.models.backbones.base import Backbone
from sppnet.models.backbones.registry import WeightsArg, register_backbone

__all__ = ["mobilenet_v2_c4"]

#: ``features[:14]`` ends with the third 96-channel inverted residual block (total stride 16).
C4_BLOCKS = 14
C4_CHANNELS = 96


@register_backbone("mobilenet_v2_c4")
def mobilenet_v2_c4(weights: WeightsArg = None) -> Backbone:
    """MobileNetV2 ``features[:14]``: stride 16, 96 channels, offset 0, ImageNet weights offline
    with ``weights="imagenet"`` (resolved like ``mobilenet_v2``'s)."""
    model, _ = build_torchvision(
        "mobilenet_v2",
        torchvision.models.mobilenet_v2,
        torchvision.models.MobileNet_V2_Weights,
        weights,
    )
    return Backbone("mobilenet_v2_c4", model.features[:C4_BLOCKS], out_channels=C4_CHANNELS)
