"""AlexNet (torchvision's one-GPU variant) to conv5 + ReLU, without pool5: stride 16, 256 channels.

Offset: conv1 11x11/4 pad 2 moves the centre by (11 - 1) / 2 - 2 = 3 px; each unpadded 3x3/2 max
pool by 1 cell of its input (4 px after conv1, 8 px after pool1): ``offset = 3 + 4 + 8 = 15``.
Minimum input side 31 px (the smallest that survives both unpadded pools).
"""

from __future__ import annotations

import torchvision
from torch import nn

from sppnet.models.backbones._torchvision import build_torchvision
from sppnet.models.backbones.base import Backbone
from sppnet.models.backbones.registry import WeightsArg, register_backbone


@register_backbone("alexnet")
def alexnet(weights: WeightsArg = None) -> Backbone:
    model, _ = build_torchvision(
        "alexnet", torchvision.models.alexnet, torchvision.models.AlexNet_Weights, weights
    )
    body = nn.Sequential(*list(model.features.children())[:-1])  # drop pool5
    return Backbone("alexnet", body, out_channels=256)
