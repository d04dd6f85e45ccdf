"""No host round trips on the detector's hot path: run it on the meta device, where any read of
a tensor's values (``.item()``, ``float()``, ``bool()``, ``.tolist()``) raises. On a GPU each
such read is a device sync."""

import pytest
import torch
from factories import tiny_detector

from sppnet.ops import roi_spp


def _meta_inputs(windows: int = 50):
    image = torch.empty(3, 64, 80, device="meta")
    proposals = torch.empty(windows, 4, device="meta")
    return image, proposals


@torch.no_grad()
def test_conv_pooling_fc_and_box_decoding_read_no_values():
    detector = tiny_detector(fc_dims=(16, 16)).to("meta")
    image, proposals = _meta_inputs()
    features = detector.compute_features([image])
    pooled = detector.pool_windows(features, [proposals])
    scores, deltas = detector.score_windows(pooled)
    boxes = detector.box_coder.decode(deltas.reshape(50, -1), proposals)
    assert pooled.shape == (50, detector.pooled_features)
    assert scores.shape == (50, 2) and boxes.shape == (50, 8)


def test_the_check_would_notice_a_value_read():
    # roi_spp's own box checks read values: with them on, the meta run fails; the detector's
    # pooler turns them off (it checks proposals once per forward call instead).
    feature_map = torch.empty(1, 4, 8, 8, device="meta")
    boxes = torch.empty(5, 5, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        roi_spp(feature_map, boxes, (2, 1), 1 / 4, check_boxes=True)
    assert roi_spp(feature_map, boxes, (2, 1), 1 / 4, check_boxes=False).shape == (5, 20)
    assert tiny_detector().pooler.check_boxes is False


def test_forward_still_refuses_non_finite_proposals():
    detector = tiny_detector()
    image = torch.zeros(3, 64, 80, dtype=torch.uint8)
    bad = torch.tensor([[0.0, 0.0, float("nan"), 10.0]])
    with pytest.raises(ValueError, match="NaN or Inf"):
        detector([image], [bad])
