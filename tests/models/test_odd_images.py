"""Bounded cost on images of extreme aspect ratio: the resize caps the longer side."""

from __future__ import annotations

import time

import pytest
import torch

from sppnet.models.transform import DetectionTransform, InputSizeCheck, resize_bounded

ODD = [(3, 20000), (20000, 3), (1, 1)]


@pytest.mark.parametrize("height, width", ODD)
def test_detection_transform_caps_the_longer_side(height, width):
    transform = DetectionTransform((0.5,) * 3, (0.25,) * 3, scales=(224, 448), max_size=1000)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    start = time.perf_counter()
    batches = transform([image])
    assert time.perf_counter() - start < 10.0
    for batch in batches:
        (resized,) = batch.images
        assert max(resized.shape[1:]) <= 1000
        assert resized.numel() <= 3 * 1000 * 1000  # unbounded: 3 x 224 x 1.5 M floats (4 GB)


def test_input_size_check_refuses_slivers_and_accepts_the_rest():
    check = InputSizeCheck(scales=(224, 448), max_size=1000, min_side=32)
    for height, width in [(3, 20000), (20000, 3)]:
        with pytest.raises(ValueError, match=r"aspect ratio 6667:1.*minimum side of 32 px"):
            check(height, width)
    check(1, 1)  # 224 x 224 and 448 x 448: fine
    check(375, 500)
    with pytest.raises(ValueError, match="at scale 224"):
        check(100, 4000)  # 25 x 1000 at scale 224
    transform = DetectionTransform((0.5,) * 3, (0.25,) * 3, scales=(224,), max_size=1000)
    assert transform.size_check(32) == InputSizeCheck((224,), 1000, 32)


@pytest.mark.parametrize("height, width", ODD)
def test_resize_bounded_bounds_size_and_time(height, width):
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    start = time.perf_counter()
    x = resize_bounded(image, 224, 1000)
    assert time.perf_counter() - start < 10.0
    assert x.dtype == torch.float32 and max(x.shape[1:]) <= 1000
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    if (height, width) == (1, 1):
        assert tuple(x.shape) == (3, 224, 224)
        assert torch.allclose(x, image.float().div(255).expand(3, 224, 224), atol=1e-6)


def test_resize_bounded_matches_the_shorter_side_rule_when_the_cap_does_not_bite():
    from sppnet.data.image_folder import resize_shorter_side

    image = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8)
    assert torch.equal(resize_bounded(image, 224, 1000), resize_shorter_side(image, 224))
    assert tuple(resize_bounded(image, 224, 250).shape) == (3, 188, 250)


@pytest.mark.parametrize(("height", "width"), [(3, 20000), (20000, 3), (1, 1), (2, 7)])
def test_classifier_resizes_bound_the_longer_side(height, width):
    from sppnet.data.image_folder import MAX_SIZE, random_square_crops, resize_shorter_side

    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    test_view = resize_shorter_side(image, 224)
    assert max(test_view.shape[-2:]) <= MAX_SIZE
    assert min(test_view.shape[-2:]) >= 1
    torch.manual_seed(0)
    crops = random_square_crops([image], 32)
    assert crops.shape == (1, 3, 32, 32)
    assert float(crops.min()) >= 0.0 and float(crops.max()) <= 1.0


def test_classifier_resize_keeps_ordinary_images_as_before():
    from sppnet.data.image_folder import resize_shorter_side

    image = torch.randint(0, 256, (3, 300, 500), dtype=torch.uint8)
    view = resize_shorter_side(image, 224)
    assert view.shape == (3, 224, 373)
    capped = resize_shorter_side(image, 224, max_size=200)
    assert capped.shape == (3, 120, 200)


def test_elongated_crop_takes_a_square_of_the_original():
    from sppnet.data.image_folder import random_square_crops

    image = torch.zeros(3, 4, 9000, dtype=torch.uint8)
    image[:, :, 4500:] = 255  # right half white: each crop is all black or all white
    torch.manual_seed(1)
    crops = random_square_crops([image] * 8, 16)
    per_crop = crops.flatten(1)
    assert per_crop.shape == (8, 3 * 16 * 16)
    spans = per_crop.max(1).values - per_crop.min(1).values
    assert int((spans < 0.5).sum()) >= 6  # a 4 px square rarely straddles the edge
