"""The fused softmax + SVM scoring head."""

from __future__ import annotations

import pytest
import torch

from sppnet.config import DetectorConfig
from sppnet.models.heads import SoftmaxHead
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.models.svm import LinearSVMs


def _heads(d=16, n=3, seed=0):
    torch.manual_seed(seed)
    soft, svm = SoftmaxHead(d, n), LinearSVMs(d, n)
    with torch.no_grad():
        soft.fc8.weight.normal_()
        svm.weight.normal_()
        svm.bias.normal_()
    return soft, svm


def test_scores_are_the_geometric_mean_of_the_two_probabilities():
    soft, svm = _heads()
    fused = SoftmaxSVMFusion(soft, svm)
    x = torch.randn(7, 16)
    p = torch.softmax(x @ soft.fc8.weight.t() + soft.fc8.bias, dim=1)[:, 1:]
    m = x @ svm.weight.t() + svm.bias
    torch.testing.assert_close(fused.class_scores(x), torch.sqrt(p / (1 + torch.exp(-m))))
    assert torch.equal(fused(x), fused.class_scores(x))
    s = fused.class_scores(x)
    assert s.shape == (7, 3) and bool(((s > 0) & (s < 1)).all())


def test_a_tight_box_outranks_a_loose_one_the_softmax_ties():
    # Same class probability, different SVM margins: only the fused score separates them.
    soft, svm = _heads(d=2, n=1)
    with torch.no_grad():
        soft.fc8.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        soft.fc8.bias.zero_()
        svm.weight.copy_(torch.tensor([[0.0, 1.0]]))
        svm.bias.zero_()
    x = torch.tensor([[2.0, 1.5], [2.0, -1.5]])
    assert soft.class_scores(x)[0, 0] == soft.class_scores(x)[1, 0]
    fused = SoftmaxSVMFusion(soft, svm).class_scores(x)
    assert fused[0, 0] > fused[1, 0]


def test_mismatched_heads_are_refused():
    soft, svm = _heads()
    with pytest.raises(ValueError, match="classes"):
        SoftmaxSVMFusion(soft, LinearSVMs(16, 4))
    with pytest.raises(ValueError, match="features"):
        SoftmaxSVMFusion(soft, LinearSVMs(8, 3))
    with pytest.raises(TypeError):
        SoftmaxSVMFusion(svm, soft)  # type: ignore[arg-type]


def test_unknown_scoring_is_refused():
    with pytest.raises(ValueError, match="softmax\\+svm"):
        DetectorConfig(scoring="both")
