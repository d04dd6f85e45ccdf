import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sppnet.proposals import plot_recall, proposal_recall, unique_boxes
from sppnet.proposals.recall import format_recall_table


def test_recall_by_hand():
    gt = [torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), torch.tensor([[0.0, 0, 4, 4]])]
    proposals = [
        # IoU with gt0: 1.0 (exact), then gt1 at 0.64 (8x8 inside 10x10), then gt1 exactly.
        torch.tensor([[0.0, 0, 10, 10], [21, 21, 29, 29], [20, 20, 30, 30]]),
        torch.zeros(0, 4),  # no proposals: its box is missed at every budget
    ]
    curve = proposal_recall(proposals, gt, counts=(1, 2, 3, 10), iou_thresholds=(0.5, 0.7))
    assert curve.num_gt == 3 and curve.num_images == 2 and curve.mean_proposals == 1.5
    assert curve.recall[0].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert curve.recall[1].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert curve.at(0.7, 3) == pytest.approx(2 / 3)
    assert curve.to_dict()["recall"]["0.5"] == curve.recall[0].tolist()


@given(st.integers(0, 20), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_recall_is_monotone_in_budget_and_threshold(num_boxes, num_gt, seed):
    generator = torch.Generator().manual_seed(seed)

    def boxes(n):
        xy = torch.rand(n, 2, generator=generator) * 50
        return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=generator) * 50], 1)

    curve = proposal_recall([boxes(num_boxes)], [boxes(num_gt)], iou_thresholds=(0.3, 0.5, 0.7))
    assert (curve.recall.diff(dim=1) >= 0).all()
    assert (curve.recall.diff(dim=0) <= 0).all()
    assert ((curve.recall >= 0) & (curve.recall <= 1)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="increasing"):
        proposal_recall([], [], counts=(10, 5))
    with pytest.raises(ValueError, match="iou_thresholds"):
        proposal_recall([], [], iou_thresholds=(0.0,))
    with pytest.raises(ValueError, match="1 proposal lists but 0"):
        proposal_recall([torch.zeros(0, 4)], [])


def test_table_and_plot(tmp_path):
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    curves = {
        "a": proposal_recall([torch.tensor([[0.0, 0, 10, 10]])], gt, counts=(1, 2)),
        "b": proposal_recall([torch.tensor([[0.0, 0, 5, 5]])], gt, counts=(1, 2)),
    }
    table = format_recall_table(curves).splitlines()
    assert table[0].split() == ["proposals", "IoU", "1", "2"]
    assert table[1].split() == ["a", "0.5", "1.000", "1.000"]
    assert table[3].split() == ["b", "0.5", "0.000", "0.000"]
    path = tmp_path / "recall.png"
    plot_recall(curves, path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@given(st.lists(st.integers(0, 3), min_size=0, max_size=30))
def test_unique_boxes_keeps_first_occurrences_in_order(values):
    boxes = torch.tensor([[v, 0, v + 1, 1] for v in values], dtype=torch.float32).reshape(-1, 4)
    keep = unique_boxes(boxes).tolist()
    first = {}
    for i, v in enumerate(values):
        first.setdefault(v, i)
    assert keep == sorted(first.values())
