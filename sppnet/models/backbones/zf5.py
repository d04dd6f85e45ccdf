"""ZF-5, the trunk of the SPP-net paper (He et al. 2014, Table 1), built from its layer table.

    conv1 96 x 7x7 / 2, LRN, pool 3x3 / 2
    conv2 256 x 5x5 / 2, LRN, pool 3x3 / 2
    conv3 384 x 3x3, conv4 384 x 3x3, conv5 256 x 3x3        total stride 16, 256 channels

Every conv and pool is padded ``floor(k / 2)``, the assumption behind the paper's box mapping
("cell x' is centred on pixel S x'"), so ``offset = 0``. A 224 px side gives a 14 x 14 conv5 map.
No public ImageNet checkpoint exists in torchvision's format: ``weights`` is ``None`` (random
init, Kaiming) or a local file holding this module's ``state_dict`` (or a path named by
``SPPNET_WEIGHTS_ZF5`` for ``"imagenet"``).
"""

from __future__ import annotations

from torch import nn

from sppnet.models.backbones.base import Backbone
from sppnet.models.backbones.registry import WeightsArg, register_backbone
from sppnet.models.weights import load_checkpoint, load_state_dict_strict, resolve_weights

__all__ = ["zf5_body"]


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


def zf5_body(width: float = 1.0) -> nn.Sequential:
    """ZF-5's conv1..conv5 (with ReLUs, LRNs and pools); ``width`` scales every channel count."""
    if not width > 0:
        raise ValueError(f"zf5_body: width must be positive, got {width}")
    c1, c2, c3, c4, c5 = (max(1, round(c * width)) for c in (96, 256, 384, 384, 256))
    body = nn.Sequential(
        _conv(3, c1, 7, 2),
        nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, stride=2, padding=1),
        _conv(c1, c2, 5, 2),
        nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, stride=2, padding=1),
        _conv(c2, c3, 3),
        nn.ReLU(inplace=True),
        _conv(c3, c4, 3),
        nn.ReLU(inplace=True),
        _conv(c4, c5, 3),
        nn.ReLU(inplace=True),
    )
    for module in body.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return body


@register_backbone("zf5")
def zf5(weights: WeightsArg = None, width: float = 1.0) -> Backbone:
    """The paper's ZF-5 trunk (stride 16, 256 channels x ``width``, offset 0)."""
    body = zf5_body(width)
    path = resolve_weights("zf5", weights)
    if path is not None:
        state = load_checkpoint(path)
        state = {k.removeprefix("body."): v for k, v in state.items()}
        load_state_dict_strict(body, state, path)
    out_channels = body[-2].out_channels
    return Backbone("zf5", body, out_channels)
