import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sppnet.proposals import SlidingWindows, check_proposals, sliding_windows


def test_small_case_by_hand():
    boxes = sliding_windows(20, 30, sizes=(10,), aspect_ratios=(1.0,), stride_fraction=0.5)
    xs = [0, 5, 10, 15, 20]
    ys = [0, 5, 10]
    expected = [[x, y, x + 10, y + 10] for y in ys for x in xs]
    assert boxes.tolist() == expected


def test_last_window_is_flush_with_the_edge():
    boxes = sliding_windows(10, 23, sizes=(10,), aspect_ratios=(1.0,), stride_fraction=1.0)
    assert boxes[:, 0].tolist() == [0, 10, 13]


@given(
    height=st.integers(1, 200),
    width=st.integers(1, 200),
    sizes=st.lists(st.floats(16, 300), min_size=1, max_size=3),
    ratios=st.lists(st.floats(0.2, 5), min_size=1, max_size=3),
    stride=st.floats(0.25, 1.0),
)
def test_windows_are_valid_unique_and_cover_the_image(height, width, sizes, ratios, stride):
    boxes = sliding_windows(height, width, sizes, ratios, stride)
    check_proposals(boxes, (height, width))
    assert len(torch.unique(boxes, dim=0)) == len(boxes)
    # Every pixel corner of the image lies in some window.
    assert float(boxes[:, 0].min()) == 0 and float(boxes[:, 1].min()) == 0
    assert float(boxes[:, 2].max()) == pytest.approx(width)
    assert float(boxes[:, 3].max()) == pytest.approx(height)


def test_source_ignores_content_and_validates():
    source = SlidingWindows(sizes=(16,), aspect_ratios=(0.5, 2.0))
    image = torch.zeros(3, 40, 50, dtype=torch.uint8)
    assert torch.equal(source(image, "a"), source(image + 7, "b"))
    with pytest.raises(ValueError, match="stride_fraction"):
        SlidingWindows(stride_fraction=0)
    with pytest.raises(ValueError, match="positive"):
        SlidingWindows(sizes=(-1,))
