"""The fused softmax + SVM scoring head."""

from __future__ import annotations

import pytest
import torch

from sppnet.models import SPPNetDetector
from sppnet.models.detector_config import DetectorConfig
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


def _detector(**overrides) -> SPPNetDetector:
    cfg = dict(
        num_classes=3,
        backbone="small",
        backbone_kwargs={"channels": [8, 8, 16]},
        backbone_weights=None,
        levels=(2, 1),
        scales=(96,),
        fc_dims=(16, 16),
        max_size=400,
        target_side=64.0,
    )
    cfg.update(overrides)
    torch.manual_seed(0)
    return SPPNetDetector(DetectorConfig(**cfg)).eval()


def test_detector_builds_saves_and_reloads_the_fused_head(tmp_path):
    det = _detector(scoring="softmax+svm", score_threshold=0.02, svm_score_threshold=-0.7)
    assert isinstance(det.box_predictor, SoftmaxSVMFusion)
    assert det.postprocess.score_threshold == 0.02
    with torch.no_grad():
        det.box_predictor.svms.weight.normal_()
    det.save_pretrained(tmp_path / "m")
    again = SPPNetDetector.from_pretrained(tmp_path / "m")
    assert again.config.scoring == "softmax+svm"
    assert isinstance(again.box_predictor, SoftmaxSVMFusion)
    x = torch.randn(5, det.representation_size)
    torch.testing.assert_close(again.box_predictor(x), det.box_predictor(x))
    # Swapping heads moves the config and the threshold with them.
    again.set_box_predictor(again.box_predictor.svms)
    assert again.config.scoring == "svm" and again.postprocess.score_threshold == -0.7
    again.set_box_predictor(SoftmaxSVMFusion(*_heads(again.representation_size, 3)))
    assert again.config.scoring == "softmax+svm" and again.postprocess.score_threshold == 0.02


def test_unknown_scoring_is_refused():
    with pytest.raises(ValueError, match="softmax\\+svm"):
        DetectorConfig(scoring="both")
