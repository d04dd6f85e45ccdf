"""save_single_heads (sppnet.engine.detection.run): the heads a config does not name."""

import torch
from factories import tiny_detector

from sppnet.engine.detection.run import save_single_heads
from sppnet.models import SPPNetDetector
from sppnet.models.heads import SoftmaxHead
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.models.svm import LinearSVMs


def _detector(scoring: str) -> SPPNetDetector:
    return tiny_detector(max_size=2000, target_side=224.0, scoring=scoring)


def _heads() -> dict:
    softmax, svm = SoftmaxHead(16, 2), LinearSVMs(16, 2)
    with torch.no_grad():
        softmax.fc8.weight.normal_()
        svm.weight.normal_()
    return {"softmax": softmax, "svm": svm}


def test_saves_only_the_heads_the_config_does_not_name(tmp_path):
    heads = _heads()
    det = _detector("svm")
    det.set_box_predictor(heads["svm"])
    save_single_heads(det, heads, tmp_path)
    assert not (tmp_path / "model_svm").exists()
    saved = SPPNetDetector.from_pretrained(tmp_path / "model_softmax")
    assert saved.config.scoring == "softmax"
    torch.testing.assert_close(saved.box_predictor.fc8.weight, heads["softmax"].fc8.weight)
    assert isinstance(det.box_predictor, LinearSVMs)  # the original keeps its head


def test_a_fused_model_saves_both_single_heads(tmp_path):
    heads = _heads()
    det = _detector("softmax+svm")
    det.set_box_predictor(SoftmaxSVMFusion(heads["softmax"], heads["svm"]))
    save_single_heads(det, heads, tmp_path)
    assert SPPNetDetector.from_pretrained(tmp_path / "model_softmax").config.scoring == "softmax"
    saved_svm = SPPNetDetector.from_pretrained(tmp_path / "model_svm")
    assert saved_svm.config.scoring == "svm"
    torch.testing.assert_close(saved_svm.box_predictor.weight, heads["svm"].weight)
