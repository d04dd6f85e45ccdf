import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sppnet.config import PAPER_SCALES, scaled_scales
from sppnet.models.scales import assign_scales, resize_factor, resized_size


def test_resize_factor_makes_shorter_side_the_scale():
    assert resize_factor(375, 500, 688) == pytest.approx(688 / 375)
    assert resize_factor(500, 375, 688) == pytest.approx(688 / 375)
    assert resized_size(375, 500, resize_factor(375, 500, 688)) == (688, 917)


def test_resize_factor_caps_the_longer_side():
    # 100 x 1000: shorter side 600 would make the longer 6000 > 2000.
    assert resize_factor(100, 1000, 600, max_size=2000) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "args", [(0, 10, 5), (10, 10, 0), (10, -1, 5)], ids=["height", "scale", "width"]
)
def test_resize_factor_rejects_bad_sizes(args):
    with pytest.raises(ValueError):
        resize_factor(*args)


def test_scaled_scales_maps_688_to_the_base():
    assert scaled_scales(688) == PAPER_SCALES
    assert scaled_scales(480) == (335, 402, 480, 603, 837)


def test_assign_scales_hand_cases():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 100.0, 100.0],  # areas at f = 1, 2, 3: 1e4, 4e4, 9e4 vs 224^2 = 50176
            [0.0, 0.0, 224.0, 224.0],  # exactly the target at f = 1
            [0.0, 0.0, 40.0, 40.0],  # 1600, 6400, 14400: the largest factor is closest
            [5.0, 5.0, 5.0, 30.0],  # zero area: the largest factor
        ]
    )
    index = assign_scales(boxes, [1.0, 2.0, 3.0], 224)
    assert index.tolist() == [1, 0, 2, 2]
    assert index.dtype == torch.int64


def test_assign_scales_paper_five_scales_on_a_pascal_image():
    # A 500 x 375 PASCAL image at the paper's five scales: factors s / 375.
    factors = [s / 375 for s in PAPER_SCALES]
    # A 150 x 150 window: scaled sides 192, 230, 275, 346, 480 -> 230 (576) is closest to 224.
    # A 60 x 80 window: sqrt area 69.3 -> scaled 88..222 -> 1200 is closest.
    boxes = torch.tensor([[10.0, 10.0, 160.0, 160.0], [0.0, 0.0, 60.0, 80.0]])
    assert assign_scales(boxes, factors, 224).tolist() == [1, 4]


def test_assign_scales_single_scale_is_zero():
    boxes = torch.rand(7, 4) * 100
    assert assign_scales(boxes, [1.7], 224).tolist() == [0] * 7


@given(
    st.lists(
        st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(1, 400), st.floats(1, 400)),
        min_size=1,
        max_size=20,
    ),
    st.lists(st.floats(0.1, 5.0), min_size=1, max_size=6),
    st.floats(10, 400),
)
def test_assign_scales_minimises_the_area_difference(windows, factors, target):
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in windows], dtype=torch.float64)
    index = assign_scales(boxes, factors, target)
    for (_, _, w, h), k in zip(windows, index.tolist(), strict=True):
        diffs = [abs(w * h * f * f - target * target) for f in factors]
        assert diffs[k] == pytest.approx(min(diffs), rel=1e-9, abs=1e-6)


def test_assign_scales_rejects_bad_input():
    with pytest.raises(ValueError, match="boxes"):
        assign_scales(torch.zeros(3, 5), [1.0], 224)
    with pytest.raises(ValueError, match="factors"):
        assign_scales(torch.zeros(3, 4), [], 224)
    with pytest.raises(ValueError, match="factors"):
        assign_scales(torch.zeros(3, 4), [1.0, -2.0], 224)
    with pytest.raises(ValueError, match="target_side"):
        assign_scales(torch.zeros(3, 4), [1.0], 0)
