"""Box coder and per-class NMS."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from sppnet.ops.boxes import (
    DEFAULT_SCALE_CLAMP,
    BoxCoder,
    batched_nms_per_class,
    box_iou,
    decode_boxes,
    encode_boxes,
)

_coord = st.floats(min_value=-500.0, max_value=1500.0, allow_nan=False)
_side = st.floats(min_value=0.5, max_value=800.0, allow_nan=False)


@st.composite
def _boxes(draw, n):
    out = []
    for _ in range(n):
        x, y, w, h = draw(_coord), draw(_coord), draw(_side), draw(_side)
        out.append([x, y, x + w, y + h])
    return torch.tensor(out, dtype=torch.float64)


_weights = st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 0.5, 7.0)])


@given(data=st.data(), n=st.integers(1, 8), weights=_weights)
def test_encode_decode_round_trip(data, n, weights):
    boxes, proposals = data.draw(_boxes(n)), data.draw(_boxes(n))
    deltas = encode_boxes(boxes, proposals, weights)
    # A box at most 1600 px from a 0.5 px proposal can need dw up to log(1600) > the clamp;
    # only compare where the clamp did not act.
    unclamped = (deltas[:, 2:] / deltas.new_tensor(weights[2:]) <= DEFAULT_SCALE_CLAMP).all(1)
    decoded = decode_boxes(deltas, proposals, weights)
    torch.testing.assert_close(decoded[unclamped], boxes[unclamped], rtol=1e-9, atol=1e-7)
    # And the other way round: decode then encode gives the deltas back.
    again = encode_boxes(decoded[unclamped], proposals[unclamped], weights)
    torch.testing.assert_close(again, deltas[unclamped], rtol=1e-9, atol=1e-9)


def test_encode_values_by_hand():
    # Proposal 10 x 20 centred at (5, 10); box 20 x 10 centred at (10, 5).
    # dx = (10 - 5) / 10 = 0.5, dy = (5 - 10) / 20 = -0.25, dw = log 2, dh = log 1/2.
    proposal = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    box = torch.tensor([[0.0, 0.0, 20.0, 10.0]])
    expected = torch.tensor([[0.5, -0.25, math.log(2.0), math.log(0.5)]])
    torch.testing.assert_close(encode_boxes(box, proposal), expected)
    torch.testing.assert_close(
        encode_boxes(box, proposal, (10, 10, 5, 5)), expected * torch.tensor([10, 10, 5, 5.0])
    )


def test_matches_torchvision_box_coder():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 300
    proposals = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 200], 1)
    boxes = proposals + torch.randn(50, 4, generator=g) * 10
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    ours = BoxCoder((10.0, 10.0, 5.0, 5.0))
    theirs = TorchvisionBoxCoder((10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(
        ours.encode(boxes, proposals), theirs.encode_single(boxes, proposals)
    )
    deltas = torch.randn(50, 12, generator=g)
    torch.testing.assert_close(
        ours.decode(deltas, proposals),
        theirs.decode_single(deltas, proposals),
        rtol=1e-5,
        atol=1e-3,
    )


def test_decode_per_class_layout():
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 10.0, 30.0, 50.0]])
    deltas = torch.randn(2, 3 * 4)
    out = decode_boxes(deltas, proposals)
    assert out.shape == (2, 12)
    for k in range(3):
        torch.testing.assert_close(
            out[:, 4 * k : 4 * k + 4], decode_boxes(deltas[:, 4 * k : 4 * k + 4], proposals)
        )


def test_decode_clamps_growth():
    proposal = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    out = decode_boxes(huge, proposal)
    assert torch.isfinite(out).all()
    # Clamped at log(1000 / 16): a 16 px box grows to 1000 px, about its unchanged centre.
    torch.testing.assert_close(out, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))
    out = decode_boxes(huge, proposal, scale_clamp=math.log(2.0))
    torch.testing.assert_close(out, torch.tensor([[-8.0, -8.0, 24.0, 24.0]]))
    # Weights divide before the clamp.
    out = decode_boxes(torch.tensor([[0.0, 0.0, 5 * math.log(2.0), 0.0]]), proposal, (10, 10, 5, 5))
    torch.testing.assert_close(out, torch.tensor([[-8.0, 0.0, 24.0, 16.0]]))


def test_coder_errors():
    good = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    flat = torch.tensor([[0.0, 0.0, 10.0, 0.0]])
    with pytest.raises(ValueError, match="positive width and height"):
        encode_boxes(good, flat)
    with pytest.raises(ValueError, match="positive width and height"):
        encode_boxes(flat, good)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        encode_boxes(good, good.repeat(2, 1))
    with pytest.raises(ValueError, match=r"\[N, 4 \* K\]"):
        decode_boxes(torch.zeros(1, 6), good)
    with pytest.raises(ValueError, match="weights"):
        BoxCoder((1.0, 1.0, 0.0, 1.0))


# ------------------------------------------------------------------------------------ NMS


def _greedy_nms_reference(boxes, scores, labels, iou_threshold):
    """Plain per-class greedy NMS, one box at a time."""
    iou = box_iou(boxes, boxes).tolist()
    labels = labels.tolist()
    order = sorted(range(len(labels)), key=lambda i: -float(scores[i]))
    kept = []
    for i in order:
        if all(labels[j] != labels[i] or iou[i][j] <= iou_threshold for j in kept):
            kept.append(i)
    return kept


def test_nms_classes_never_suppress_each_other():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = box.repeat(3, 1)
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = batched_nms_per_class(boxes, scores, torch.tensor([1, 2, 3]))
    assert keep.tolist() == [0, 1, 2]
    keep = batched_nms_per_class(boxes, scores, torch.tensor([1, 2, 1]))
    assert keep.tolist() == [0, 1]


def test_nms_threshold():
    # IoU of a and b = 50 / 150 = 1/3: above 0.3 (suppressed), below 0.4 (kept).
    a = [0.0, 0.0, 10.0, 10.0]
    b = [5.0, 0.0, 15.0, 10.0]
    boxes, scores, labels = torch.tensor([a, b]), torch.tensor([0.6, 0.9]), torch.tensor([1, 1])
    assert batched_nms_per_class(boxes, scores, labels, iou_threshold=0.3).tolist() == [1]
    assert batched_nms_per_class(boxes, scores, labels, iou_threshold=0.4).tolist() == [1, 0]


def test_nms_score_threshold_and_cap():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    scores = torch.tensor([0.5, -1.0, 2.0, 0.1])
    labels = torch.tensor([1, 1, 2, 2])
    assert batched_nms_per_class(boxes, scores, labels).tolist() == [2, 0, 3, 1]
    assert batched_nms_per_class(boxes, scores, labels, score_threshold=0.1).tolist() == [2, 0]
    assert batched_nms_per_class(boxes, scores, labels, max_detections=3).tolist() == [2, 0, 3]
    assert batched_nms_per_class(boxes, scores, labels, score_threshold=5.0).tolist() == []
    empty = batched_nms_per_class(
        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    )
    assert empty.shape == (0,) and empty.dtype == torch.int64


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_greedy_reference(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(120, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(120, 2, generator=g) * 40], 1)
    scores = torch.rand(120, generator=g)
    labels = torch.randint(1, 4, (120,), generator=g)
    keep = batched_nms_per_class(boxes, scores, labels, iou_threshold=0.3)
    assert keep.tolist() == _greedy_nms_reference(boxes, scores, labels, 0.3)


def test_nms_bad_shapes():
    with pytest.raises(ValueError, match="scores"):
        batched_nms_per_class(torch.zeros(2, 4), torch.zeros(3), torch.zeros(2, dtype=torch.long))
