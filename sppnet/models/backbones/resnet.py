"""ResNet-50 up to the stride-16 stage (conv1 .. layer3): stride 16, 1024 channels.

Offset: conv1 7x7/2 pad 3, max pool 3x3/2 pad 1 and the 3x3/2 pad 1 convs that open layer2 and
layer3 are all padded ``floor(k / 2)``, so none moves the centre: ``offset = 0``. (The 1x1/2
shortcut convs map cell ``j`` to ``2 j`` too, so both branches agree.) Minimum input side 16 px.
"""

from __future__ import annotations

import torchvision
from torch import nn

from sppnet.models.backbones._torchvision import build_torchvision
from sppnet.models.backbones.base import Backbone
from sppnet.models.backbones.registry import WeightsArg, register_backbone


@register_backbone("resnet50")
def resnet50(weights: WeightsArg = None) -> Backbone:
    model, _ = build_torchvision(
        "resnet50", torchvision.models.resnet50, torchvision.models.ResNet50_Weights, weights
    )
    body = nn.Sequential()
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
        body.add_module(name, getattr(model, name))
    return Backbone("resnet50", body, out_channels=1024)
