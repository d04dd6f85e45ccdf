"""The kind of a scoring head, as ``DetectorConfig.scoring`` names it."""

from __future__ import annotations

from torch import nn

from sppnet.models.heads import SoftmaxHead
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.models.svm import LinearSVMs

__all__ = ["head_scoring"]


def head_scoring(head: nn.Module) -> str:
    """``"softmax"`` for a :class:`SoftmaxHead`, ``"svm"`` for :class:`LinearSVMs`,
    ``"softmax+svm"`` for :class:`SoftmaxSVMFusion`.

    Raises:
        TypeError: any other module.
    """
    if isinstance(head, SoftmaxSVMFusion):
        return "softmax+svm"
    if isinstance(head, SoftmaxHead):
        return "softmax"
    if isinstance(head, LinearSVMs):
        return "svm"
    raise TypeError(
        f"head must be a SoftmaxHead, LinearSVMs or SoftmaxSVMFusion, got {type(head).__name__}"
    )
