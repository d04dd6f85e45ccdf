"""The preset's pixel sizes carried over to a dataset of other image sizes (``train --data``)."""

from __future__ import annotations

import pytest

from sppnet.config import load_config_file
from sppnet.config.image_scale import rescale_for_images


@pytest.fixture
def demo():
    return load_config_file("demo")


def test_the_demo_preset_names_the_median_side_of_its_own_train_images(demo):
    # 313 px: the median shorter side of the 400 demo train images (docs/data.md).
    assert demo.data["image_side"] == 313


def test_larger_images_scale_every_pixel_size(demo):
    # The second scene builder's train split: median shorter side 511 px -> x 1.63.
    config, scale = rescale_for_images(demo, 511)
    assert scale.factor == 1.63 and scale.reference_side == 313 and scale.median_side == 511
    assert config.model.scales == (784,)  # 480 * 1.63 = 782.4 -> a multiple of 16
    assert config.train.train_scales == (528, 656, 784, 912)
    assert config.model.max_size == 2300  # 1400 * 1.63 = 2282 -> a multiple of 100
    assert config.data["proposals"]["shorter_side"] == 448  # 224 * 2 ** round(log2 1.63)
    assert config.model.target_side == demo.model.target_side  # in resized pixels: unchanged
    assert "x 1.63" in scale.describe()
    # The input is left as it was.
    assert demo.model.scales == (480,) and demo.data["proposals"]["shorter_side"] == 224


def test_smaller_images_scale_down_and_proposals_halve(demo):
    config, scale = rescale_for_images(demo, 170)
    assert scale.factor == 0.54  # 170 / 313 = 0.543...
    assert config.model.scales == (256,)  # 480 * 0.54 = 259.2 -> 256
    assert config.train.train_scales == (176, 224, 256, 304)
    assert config.data["proposals"]["shorter_side"] == 112  # 224 * 2 ** round(log2 0.54)
    assert config.model.max_size == 800  # 1400 * 0.54 = 756 -> 800


@pytest.mark.parametrize("side", [313, 260, 390])
def test_images_near_the_reference_keep_the_preset_as_it_is(demo, side):
    config, scale = rescale_for_images(demo, side)
    assert scale.factor == 1.0 and config is demo
    assert "as they are" in scale.describe()


def test_the_factor_is_clamped(demo):
    _, big = rescale_for_images(demo, 4000)
    _, small = rescale_for_images(demo, 20)
    assert big.factor == 2.5 and small.factor == 0.5


def test_a_preset_without_a_reference_is_left_alone():
    paper = load_config_file("paper")
    assert "image_side" not in paper.data
    config, scale = rescale_for_images(paper, 1000)
    assert config is paper and scale.reference_side is None and scale.factor == 1.0


def test_full_resolution_proposals_stay_at_full_resolution(demo):
    demo.data["proposals"] = {**demo.data["proposals"], "shorter_side": 0}
    config, _ = rescale_for_images(demo, 626)
    assert config.data["proposals"]["shorter_side"] == 0 and config.model.scales == (960,)


@pytest.mark.parametrize("bad", [0, -3.0, float("nan")])
def test_a_bad_median_is_refused(demo, bad):
    with pytest.raises(ValueError, match="median_side"):
        rescale_for_images(demo, bad)


def test_a_bad_reference_is_refused(demo):
    demo.data["image_side"] = "big"
    with pytest.raises(ValueError, match=r"data\.image_side"):
        rescale_for_images(demo, 500)
