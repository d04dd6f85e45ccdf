"""``small``: a three-conv trunk (stride 4) for 10-class digit experiments on two CPU cores.

    conv 32 x 3x3, BN, ReLU, pool 2x2 / 2
    conv 64 x 3x3, BN, ReLU, pool 2x2 / 2
    conv 128 x 3x3, BN, ReLU                  total stride 4, 128 channels

Convs are padded 1, pools 0: ``offset = 0.5 * 1 + 0.5 * 2 = 1.5`` (a 2x2/2 pool's output cell is
centred between its two input cells). Normalisation is MNIST's (mean 0.1307, std 0.3081 on every
channel). ``weights``: ``None`` or a local file with this module's ``state_dict``.
"""

from __future__ import annotations

from torch import nn

from sppnet.models.backbones.base import Backbone
from sppnet.models.backbones.registry import WeightsArg, register_backbone
from sppnet.models.weights import load_checkpoint, load_state_dict_strict, resolve_weights

MNIST_MEAN = (0.1307,) * 3
MNIST_STD = (0.3081,) * 3


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


@register_backbone("small")
def small(weights: WeightsArg = None, channels: tuple[int, int, int] = (32, 64, 128)) -> Backbone:
    """The digits trunk (stride 4, ``channels[-1]`` output channels, offset 1.5)."""
    c1, c2, c3 = channels
    body = nn.Sequential(
        *_block(3, c1),
        nn.MaxPool2d(2, 2),
        *_block(c1, c2),
        nn.MaxPool2d(2, 2),
        *_block(c2, c3),
    )
    path = resolve_weights("small", weights)
    if path is not None:
        state = load_checkpoint(path)
        state = {k.removeprefix("body."): v for k, v in state.items()}
        load_state_dict_strict(body, state, path)
    return Backbone("small", body, c3, mean=MNIST_MEAN, std=MNIST_STD)
