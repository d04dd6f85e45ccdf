import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data

from sppnet.proposals import SelectiveSearch, check_proposals, create_source, selective_search
from sppnet.proposals.selective_search import working_size
from sppnet.proposals.split_search import merge_ranked


def _photo(name: str) -> torch.Tensor:
    return torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def coffee() -> torch.Tensor:
    return _photo("coffee")  # 400 x 600 real photograph


@pytest.fixture(scope="module")
def coffee_boxes(coffee: torch.Tensor) -> torch.Tensor:
    return selective_search(coffee, shorter_side=128)


def test_real_photo_gives_many_valid_boxes(coffee, coffee_boxes):
    boxes = coffee_boxes
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
    assert 50 <= len(boxes) <= 2000
    check_proposals(boxes, (400, 600))  # finite, x1 < x2, y1 < y2, inside the image
    assert len(torch.unique(boxes, dim=0)) == len(boxes)
    sizes = boxes[:, 2:] - boxes[:, :2]
    assert (sizes >= 8).all()
    # Selective search ends with everything merged: the whole image is a proposal, mapped back
    # exactly (working image 128 x 192 -> original 400 x 600).
    assert (boxes == torch.tensor([0.0, 0.0, 600.0, 400.0])).all(1).any()


def test_same_input_same_boxes_in_the_same_order(coffee, coffee_boxes):
    # OpenCV ranks with the C library's rand(); another call in between advances its state.
    selective_search(_photo("chelsea"), shorter_side=96)
    again = selective_search(coffee, shorter_side=128)
    assert torch.equal(again, coffee_boxes)


def test_cap_and_min_size(coffee, coffee_boxes):
    capped = selective_search(coffee, shorter_side=128, max_proposals=25)
    assert torch.equal(capped, coffee_boxes[:25])
    large = selective_search(coffee, shorter_side=128, min_size=100)
    sizes = large[:, 2:] - large[:, :2]
    assert len(large) > 0 and (sizes >= 100).all()
    # The same boxes, in the same order, as filtering the uncapped list.
    keep = ((coffee_boxes[:, 2:] - coffee_boxes[:, :2]) >= 100).all(1)
    assert torch.equal(large, coffee_boxes[keep])


def _rectangle_image(height: int, width: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    """A flat grey image with one saturated red rectangle covering pixels x1..x2-1, y1..y2-1."""
    image = torch.full((3, height, width), 128, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = torch.tensor([220, 30, 30], dtype=torch.uint8)[:, None, None]
    return image


@pytest.mark.parametrize("shorter_side", [None, 75, 100])
def test_boxes_map_back_to_original_pixels(shorter_side):
    truth = (50, 30, 110, 80)
    image = _rectangle_image(150, 200, truth)
    boxes = selective_search(image, shorter_side=shorter_side, min_size=0)
    check_proposals(boxes, (150, 200))
    _, work_w = working_size(150, 200, shorter_side)
    # The rectangle's edges land on or next to a working pixel edge: allow one working pixel.
    tolerance = 200 / work_w + 1e-4
    error = (boxes - torch.tensor(truth, dtype=torch.float32)).abs().amax(1)
    assert float(error.min()) <= tolerance
    if shorter_side in (None, 75):  # scale 1 or exactly 1/2: edges map without any error
        assert float(error.min()) == 0.0
    assert (boxes == torch.tensor([0.0, 0.0, 200.0, 150.0])).all(1).any()


def test_working_size():
    assert working_size(300, 400, 150) == (150, 200)
    assert working_size(300, 400, None) == (300, 400)
    assert working_size(100, 400, 224) == (100, 400)  # never enlarged
    assert working_size(375, 500, 224) == (224, 299)  # round(500 * 224 / 375) = 299


def test_modes_and_source_params(coffee):
    small = coffee[:, ::4, ::4].contiguous()  # 100 x 150
    single = selective_search(small, mode="single", shorter_side=None)
    fast = selective_search(small, mode="fast", shorter_side=None)
    assert 0 < len(single) < len(fast)
    source = SelectiveSearch(mode="single", shorter_side=None)
    assert torch.equal(source(small, "coffee"), single)
    assert source.params()["mode"] == "single" and source.name == "selective_search"


def test_bad_arguments_raise_clear_errors(coffee):
    with pytest.raises(ValueError, match="mode"):
        selective_search(coffee, mode="slow")
    with pytest.raises(ValueError, match="shorter_side"):
        selective_search(coffee, shorter_side=0)
    with pytest.raises(TypeError, match="uint8"):
        selective_search(coffee.float())
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        selective_search(coffee[0])


@settings(max_examples=20)
@given(
    height=st.integers(1, 48),
    width=st.integers(1, 48),
    shorter_side=st.sampled_from([None, 8, 20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_small_image_gives_valid_boxes(height, width, shorter_side, seed):
    generator = torch.Generator().manual_seed(seed % 2**31)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    boxes = selective_search(image, shorter_side=shorter_side, min_size=0)
    check_proposals(boxes, (height, width))
    assert (boxes == torch.tensor([0.0, 0.0, width, height])).all(1).any()


def test_working_size_caps_the_longer_side():
    assert working_size(3, 20000, 224, 1000) == (1, 1000)  # round(3 * 0.05) = 0 -> 1
    assert working_size(20000, 3, None, 1000) == (1000, 1)
    assert working_size(375, 500, 224, 1000) == (224, 299)  # the bound does not bite
    assert working_size(300, 4000, 224, 1000) == (75, 1000)
    assert working_size(10, 20, 224, 1000) == (10, 20)  # never enlarged


@pytest.mark.parametrize("height, width", [(3, 20000), (20000, 3), (1, 1)])
def test_thin_images_cost_little(height, width):
    # Unbounded, a 3 x 20000 strip asked OpenCV for a 1.6 GB neighbour table (minutes of CPU).
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    start = time.perf_counter()
    boxes = selective_search(image, min_size=0)
    assert time.perf_counter() - start < 10.0
    check_proposals(boxes, (height, width))


def test_merge_ranked_interleaves_by_relative_rank():
    a = np.array(
        [[0, 0, 1, 1], [1, 1, 1, 1], [2, 2, 1, 1], [3, 3, 1, 1]]
    )  # keys 1/8, 3/8, 5/8, 7/8
    b = np.array([[9, 9, 1, 1], [8, 8, 1, 1]])
    merged = merge_ranked([a, b])
    assert merged[:, 0].tolist() == [0, 9, 1, 2, 8, 3]
    assert merge_ranked([a, b[:0]]).tolist() == a.tolist()


@pytest.mark.slow  # starts the helper process (a forkserver child importing torch): ~5 s
def test_split_modes_give_the_same_boxes_with_one_or_two_processes(coffee):
    one = selective_search(coffee, mode="lite", shorter_side=96)
    two = selective_search(coffee, mode="lite", shorter_side=96, workers=2)
    assert torch.equal(one, two)
    assert torch.equal(selective_search(coffee, mode="lite", shorter_side=96, workers=2), one)
    check_proposals(one, (400, 600))
    assert len(torch.unique(one, dim=0)) == len(one) > 20
    assert (one == torch.tensor([0.0, 0.0, 600.0, 400.0])).all(1).any()


def test_split_modes_search_the_same_groupings_as_fast_mode(coffee):
    # Same 12 groupings, another ranking: the same set of boxes when none is cut by the cap.
    fast = selective_search(coffee, mode="fast", shorter_side=96, max_proposals=None)
    split = selective_search(coffee, mode="fast_split", shorter_side=96, max_proposals=None)
    assert not torch.equal(fast, split)
    assert sorted(map(tuple, fast.tolist())) == sorted(map(tuple, split.tolist()))
    lite = selective_search(coffee, mode="lite", shorter_side=96, max_proposals=None)
    assert sorted(map(tuple, lite.tolist())) != sorted(map(tuple, split.tolist()))


def test_lite_sf_searches_a_subset_of_lite_groupings(coffee):
    # lite groups each segmentation with C+S+F and S+F; lite_sf with S+F alone: the same
    # deterministic groupings, so its boxes are among lite's, and fewer.
    lite = selective_search(coffee, mode="lite", shorter_side=96, max_proposals=None)
    sf = selective_search(coffee, mode="lite_sf", shorter_side=96, max_proposals=None)
    lite_set, sf_set = set(map(tuple, lite.tolist())), set(map(tuple, sf.tolist()))
    assert sf_set < lite_set and len(sf) > 20
    check_proposals(sf, (400, 600))
    assert (sf == torch.tensor([0.0, 0.0, 600.0, 400.0])).all(1).any()
    assert torch.equal(selective_search(coffee, mode="lite_sf", shorter_side=96), sf)


def test_params_record_the_bound_and_old_caches_rebuild_unbounded():
    source = SelectiveSearch(mode="lite", workers=2)
    assert source.params()["max_side"] == 1000 and "workers" not in source.params()
    old = SelectiveSearch(max_side=None).params()
    assert "max_side" not in old  # what caches recorded before the bound existed
    rebuilt = create_source("selective_search", old)
    assert rebuilt.max_side is None and rebuilt.params() == old
    assert create_source("selective_search", source.params()).params() == source.params()
