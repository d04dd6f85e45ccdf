"""The detector's heads after SPP pooling: fc6/fc7, the softmax classifier (fc8), box regression.

Shapes: ``K`` windows, ``D`` input features per window (``C * sum(n*n for n in levels)`` after the
pooler, or the width of fc7), ``num_classes`` object classes (background excluded).
The per-class linear SVMs live in :mod:`sppnet.models.svm`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["BoxRegressor", "FCHead", "SoftmaxHead"]


class FCHead(nn.Sequential):
    """fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> Dropout (as many layers as ``dims``).

    The layers are named ``fc6``, ``fc7``, ``fc8``, ... and ``relu6``, ``drop6``, ... as in the
    paper's Caffe model, so a state dict reads ``fc6.weight``, ``fc7.bias`` and so on.

    Args:
        in_features: D, the pooled vector's length.
        dims: output width of each layer, e.g. (4096, 4096). Must not be empty (use
            :class:`torch.nn.Identity` for no fc layers).
        dropout: dropout probability after each layer (0 disables it).

    Shape: Tensor[K, in_features] -> Tensor[K, dims[-1]].
    """

    def __init__(self, in_features: int, dims: Sequence[int], dropout: float = 0.5) -> None:
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        if len(dims) == 0 or any(d < 1 for d in dims):
            raise ValueError(f"dims must be a non-empty sequence of positive ints, got {dims}")
        layers: dict[str, nn.Module] = {}
        width = in_features
        for i, d in enumerate(dims):
            n = 6 + i
            linear = nn.Linear(width, d)
            nn.init.normal_(linear.weight, std=(2.0 / width) ** 0.5)
            nn.init.zeros_(linear.bias)
            layers[f"fc{n}"] = linear
            layers[f"relu{n}"] = nn.ReLU(inplace=True)
            if dropout > 0:
                layers[f"drop{n}"] = nn.Dropout(dropout)
            width = d
        super().__init__()
        for name, module in layers.items():
            self.add_module(name, module)
        self.in_features = in_features
        self.out_features = width


class SoftmaxHead(nn.Module):
    """fc8: one logit per class plus background (column 0), for cross-entropy fine-tuning.

    Args:
        in_features: D.
        num_classes: object classes, background excluded.

    ``forward`` returns logits Tensor[K, num_classes + 1]; :meth:`class_scores` returns the
    softmax probabilities of the object classes, Tensor[K, num_classes].
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.fc8 = nn.Linear(in_features, num_classes + 1)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc8(x)

    def class_scores(self, x: Tensor) -> Tensor:
        """Softmax probabilities of classes 1..num_classes, Tensor[K, num_classes]."""
        return self.fc8(x).softmax(dim=1)[:, 1:]


class BoxRegressor(nn.Module):
    """Per-class linear bounding-box regression (R-CNN's dx, dy, dw, dh).

    ``deltas = (x * feature_scale) @ weight.T + bias`` reshaped to [K, num_classes, 4]. The weights
    start at zero, so an untrained regressor leaves boxes where they are. ``feature_scale`` is a
    buffer set by the ridge fit (features scaled to a fixed mean norm, as in the released code) and
    is 1 for a regressor learned by gradient descent.

    Args:
        in_features: D (pooled conv features in the paper, or fc7).
        num_classes: object classes, background excluded.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.linear = nn.Linear(in_features, 4 * num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        """Tensor[K, D] -> deltas Tensor[K, num_classes, 4]."""
        return self.linear(x * self.feature_scale).view(-1, self.num_classes, 4)

    @torch.no_grad()
    def set_linear(self, weight: Tensor, bias: Tensor, feature_scale: float = 1.0) -> None:
        """Load a fit: ``weight`` Tensor[4 * num_classes, D], ``bias`` Tensor[4 * num_classes]."""
        if weight.shape != self.linear.weight.shape or bias.shape != self.linear.bias.shape:
            raise ValueError(
                f"expected weight {tuple(self.linear.weight.shape)} and bias "
                f"{tuple(self.linear.bias.shape)}, got {tuple(weight.shape)} and "
                f"{tuple(bias.shape)}"
            )
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(bias)
        self.feature_scale.fill_(feature_scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"
