"""Box voting (MR-CNN) and its place in the detector's post-processing."""

from __future__ import annotations

import pytest
import torch

from sppnet.config import DetectorConfig
from sppnet.models.detector import DetectionPostprocess
from sppnet.ops import box_voting
from sppnet.ops.boxes import box_iou


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_hand_computed_vote():
    kept = _t([[0, 0, 10, 10]])
    boxes = _t([[0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 30], [1, 1, 11, 11]])
    scores = _t([0.6, 0.2, 0.9, 0.2])
    labels = torch.tensor([1, 1, 1, 2])
    # Box 1 overlaps by 80/120 (votes), box 2 by 100/300 (too little), box 3 is another class.
    out = box_voting(kept, torch.tensor([1]), boxes, scores, labels, iou_threshold=0.5)
    expected = (0.6 * boxes[0] + 0.2 * boxes[1]) / 0.8
    torch.testing.assert_close(out, expected[None])
    # At a lower threshold box 2 votes too.
    out = box_voting(kept, torch.tensor([1]), boxes, scores, labels, iou_threshold=0.3)
    expected = (0.6 * boxes[0] + 0.2 * boxes[1] + 0.9 * boxes[2]) / 1.7
    torch.testing.assert_close(out, expected[None])


def test_negative_scores_do_not_vote_and_a_box_without_voters_stays():
    kept = _t([[0, 0, 10, 10], [50, 50, 60, 60]])
    boxes = _t([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [51, 50, 61, 60]])
    scores = _t([0.5, -0.7, -0.2, -0.4])  # SVM margins
    labels = torch.tensor([3, 3, 3, 3])
    out = box_voting(kept, torch.tensor([3, 3]), boxes, scores, labels)
    torch.testing.assert_close(out, kept)


def test_each_class_votes_for_its_own_boxes_only():
    kept = _t([[0, 0, 10, 10], [0, 0, 10, 10]])
    boxes = _t([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 12, 10], [0, 0, 10, 12]])
    scores = _t([1.0, 1.0, 1.0, 1.0])
    labels = torch.tensor([1, 2, 1, 2])
    out = box_voting(kept, torch.tensor([1, 2]), boxes, scores, labels)
    torch.testing.assert_close(out, _t([[0, 0, 11, 10], [0, 0, 10, 11]]))


def test_matches_a_plain_loop_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 40], dim=1)
    scores = torch.rand(300, generator=g) * 2 - 0.5  # some negative, as SVM margins
    labels = torch.randint(1, 5, (300,), generator=g)
    kept = torch.arange(0, 300, 7)
    out = box_voting(boxes[kept], labels[kept], boxes, scores, labels, 0.4)
    for j, k in enumerate(kept.tolist()):
        num, den = torch.zeros(4, dtype=torch.float64), 0.0
        for i in range(300):
            iou = float(box_iou(boxes[k : k + 1], boxes[i : i + 1]))
            if labels[i] == labels[k] and iou >= 0.4 and scores[i] > 0:
                num += float(scores[i]) * boxes[i].double()
                den += float(scores[i])
        expected = num / den if den > 0 else boxes[k].double()
        torch.testing.assert_close(out[j].double(), expected, rtol=1e-5, atol=1e-4)


def test_empty_inputs_and_dtype():
    kept = _t([[0, 0, 4, 4]]).double()
    out = box_voting(kept, torch.tensor([1]), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0))
    assert out.dtype == torch.float64 and torch.equal(out, kept)
    none = box_voting(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), kept, _t([1]), _t([1]))
    assert none.shape == (0, 4)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            (torch.zeros(2, 4), torch.zeros(3), torch.zeros(1, 4), torch.zeros(1), torch.zeros(1)),
            "kept",
        ),
        (
            (torch.zeros(1, 4), torch.zeros(1), torch.zeros(2, 4), torch.zeros(1), torch.zeros(2)),
            "boxes",
        ),
    ],
)
def test_bad_shapes_are_reported(args, message):
    with pytest.raises(ValueError, match=message):
        box_voting(*args)
    with pytest.raises(ValueError, match="iou_threshold"):
        box_voting(
            torch.zeros(1, 4),
            torch.zeros(1),
            torch.zeros(1, 4),
            torch.zeros(1),
            torch.zeros(1),
            1.5,
        )


def test_postprocess_votes_without_changing_scores_or_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[40.0, 40.0], [120.0, 60.0]]).repeat_interleave(15, dim=0)
    xy = centres + torch.randn(30, 2, generator=g) * 3
    proposals = torch.cat([xy - 15, xy + 15], dim=1)
    boxes = proposals[:, None, :].expand(30, 3, 4)
    scores = torch.rand(30, 3, generator=g)
    plain = DetectionPostprocess(0.05, 0.3, 100)(boxes, scores, (200, 200))
    voting = DetectionPostprocess(0.05, 0.3, 100, box_voting_iou=0.5)(boxes, scores, (200, 200))
    assert torch.equal(plain["scores"], voting["scores"])
    assert torch.equal(plain["labels"], voting["labels"])
    assert not torch.allclose(plain["boxes"], voting["boxes"])
    flat = boxes.reshape(-1, 4)
    labels = torch.arange(1, 4).expand(30, 3).reshape(-1)
    ok = scores.reshape(-1) > 0.05
    expected = box_voting(
        plain["boxes"], plain["labels"], flat[ok], scores.reshape(-1)[ok], labels[ok], 0.5
    )
    torch.testing.assert_close(voting["boxes"], expected)


def test_config_field():
    assert DetectorConfig().box_voting_iou is None
    cfg = DetectorConfig(box_voting_iou=0.5)
    assert DetectorConfig.from_dict(cfg.to_dict()).box_voting_iou == 0.5
    with pytest.raises(ValueError, match="box_voting_iou"):
        DetectorConfig(box_voting_iou=0.0)
