"""Inference copies of a detector: batch norm folded into the convolutions, channels-last maps.

The trunk's batch norms are frozen (eval mode, fixed statistics), so at test time each one is a
per-channel affine map that can be folded into the convolution before it:
``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``. Together
with the channels-last memory format (what oneDNN's depthwise and 1x1 kernels prefer) this makes
the MobileNetV2 trunk about 1.6x faster on CPU (``docs/speed.md``). The same trick is YOLO's
``model.fuse()`` and ``torch.fx.experimental.optimization.fuse``; the latter cannot trace the
trunk here (its input check), hence this small pass over ``nn.Sequential`` containers.

The copy computes the same function up to float rounding (about 1e-6 relative); it is for
inference only and refuses ``save_pretrained``: save the original.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

if TYPE_CHECKING:
    from sppnet.models.detector import SPPNetDetector

__all__ = ["fold_batchnorm", "fuse_for_inference", "inference_copy"]

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _fold_pair(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    fused = copy.deepcopy(conv)
    weight, bias = fuse_conv_bn_weights(
        conv.weight,
        conv.bias,
        bn.running_mean,
        bn.running_var,
        bn.eps,
        bn.weight,
        bn.bias,
    )
    fused.weight = weight
    fused.bias = bias
    return fused


def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every batch norm that directly follows a ``Conv2d`` inside an
    ``nn.Sequential`` of ``module`` into that convolution (the norm becomes ``nn.Identity``).

    Args:
        module: in eval mode (a training-mode batch norm normalises with batch statistics, which
            no folded weight can reproduce).

    Returns:
        The number of batch norms folded.

    Raises:
        ValueError: ``module`` (or one of its batch norms) is in training mode.
    """
    bad = [name for name, m in module.named_modules() if isinstance(m, _NORMS) and m.training]
    if bad:
        raise ValueError(f"fold_batchnorm needs eval-mode batch norms; in training mode: {bad[:3]}")
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _NORMS):
                if bn.weight.shape[0] != conv.out_channels:
                    continue
                seq[i] = _fold_pair(conv, bn)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


def inference_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` for inference: eval mode, no gradients, batch norms folded
    (:func:`fold_batchnorm`), weights in channels-last format. ``module`` is unchanged."""
    copied = copy.deepcopy(module).eval().requires_grad_(False)
    fold_batchnorm(copied)
    return copied.to(memory_format=torch.channels_last)


def fuse_for_inference(detector: SPPNetDetector) -> SPPNetDetector:
    """An inference copy of ``detector``: eval mode, no gradients, the trunk's batch norms folded
    into its convolutions and its weights in channels-last format. ``detector`` is unchanged.

    Raises:
        ValueError: the copy would be saved (``save_pretrained``): save ``detector`` instead.
    """
    # Everything but the trunk is copied here; the trunk once, by inference_copy.
    fused = copy.deepcopy(detector, memo={id(detector.backbone): detector.backbone})
    fused.backbone = inference_copy(detector.backbone)
    fused.eval().requires_grad_(False)
    fused.inference_only = True
    return fused
