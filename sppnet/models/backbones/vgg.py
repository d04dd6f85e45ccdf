"""VGG-16 up to conv5_3 + ReLU, without pool5: stride 16, 512 channels.

Offset: the 3x3 convs are padded 1 (no shift); each 2x2/2 max pool without padding puts its
output cell between two input cells, half an input cell later: ``offset = 0.5 * (1 + 2 + 4 + 8)
= 7.5``. Minimum input side 16 px.
"""

from __future__ import annotations

import torchvision
from torch import nn

from sppnet.models.backbones._torchvision import build_torchvision
from sppnet.models.backbones.base import Backbone
from sppnet.models.backbones.registry import WeightsArg, register_backbone


@register_backbone("vgg16")
def vgg16(weights: WeightsArg = None) -> Backbone:
    model, _ = build_torchvision(
        "vgg16", torchvision.models.vgg16, torchvision.models.VGG16_Weights, weights
    )
    body = nn.Sequential(*list(model.features.children())[:-1])  # drop pool5
    return Backbone("vgg16", body, out_channels=512)
