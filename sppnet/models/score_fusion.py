"""Both scoring heads at once: the softmax fc8 and the per-class SVMs, fused per window.

The two heads score the same fc7 features but learn different things. fc8 is trained on sampled
windows, every window with IoU >= 0.5 counting as the object, so it separates the classes well
but ranks a loose box nearly as high as a tight one. The SVMs (R-CNN's definition) take only the
ground-truth boxes as positives and mine negatives up to IoU 0.3, so their margin drops as a box
drifts off its object. Fusing them scores a window high only when both agree: the class is right
*and* the box is tight.

``score = sqrt(p · σ(m))``: the geometric mean of fc8's class probability ``p`` and the SVM
margin ``m`` through the logistic function (``σ(0) = 1/2`` on the SVM's decision boundary). It
is a probability-like number in (0, 1), so it takes the softmax score threshold. There is nothing
to fit: the fused head is the two trained heads and this formula.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sppnet.models.heads import SoftmaxHead
from sppnet.models.svm import LinearSVMs

__all__ = ["SoftmaxSVMFusion"]


class SoftmaxSVMFusion(nn.Module):
    """A scoring head made of a :class:`SoftmaxHead` and :class:`LinearSVMs` on the same features.

    Args:
        softmax: fc8 (``num_classes + 1`` outputs, background first).
        svms: the per-class SVMs (``num_classes`` margins).

    Shape: Tensor[K, D] -> fused scores Tensor[K, num_classes], each in (0, 1).
    """

    def __init__(self, softmax: SoftmaxHead, svms: LinearSVMs) -> None:
        super().__init__()
        if not isinstance(softmax, SoftmaxHead) or not isinstance(svms, LinearSVMs):
            raise TypeError(
                "SoftmaxSVMFusion needs a SoftmaxHead and LinearSVMs, got "
                f"{type(softmax).__name__} and {type(svms).__name__}"
            )
        if softmax.num_classes != svms.num_classes:
            raise ValueError(
                f"the softmax head has {softmax.num_classes} classes, the SVMs {svms.num_classes}"
            )
        if softmax.fc8.in_features != svms.in_features:
            raise ValueError(
                f"the softmax head takes {softmax.fc8.in_features} features, the SVMs "
                f"{svms.in_features}"
            )
        self.softmax = softmax
        self.svms = svms
        self.num_classes = softmax.num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.class_scores(x)

    def class_scores(self, x: Tensor) -> Tensor:
        """``sqrt(softmax probability · sigmoid(SVM margin))`` per class, Tensor[K, num_classes]."""
        return (self.softmax.class_scores(x) * torch.sigmoid(self.svms.class_scores(x))).sqrt()
