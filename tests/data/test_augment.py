import pytest
import torch

from sppnet.data.augment import (
    AugmentConfig,
    ColorJitter,
    Compose,
    RandomBlur,
    RandomGreyscale,
    RandomHorizontalFlip,
    RandomInvert,
    RandomNoise,
    add_noise,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    build_augment,
    fade_objects,
    gaussian_blur,
    hflip,
    hflip_boxes,
    invert,
    mixup,
    scale_boxes,
    to_greyscale,
)


def _image(h=5, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)


def test_invert_values_and_twice_is_identity():
    image = _image()
    assert torch.equal(invert(image).int() + image.int(), torch.full_like(image, 255).int())
    assert torch.equal(invert(invert(image)), image)


def test_greyscale_equal_channels_and_luma():
    image = torch.tensor([[[255]], [[0]], [[0]]], dtype=torch.uint8).expand(3, 2, 3).clone()
    image[:, 1] = torch.tensor([0, 0, 255], dtype=torch.uint8)[:, None]  # second row blue
    grey = to_greyscale(image)
    assert grey.dtype == torch.uint8 and grey.shape == image.shape
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert abs(int(grey[0, 0, 0]) - round(0.2989 * 255)) <= 1  # red
    assert abs(int(grey[0, 1, 0]) - round(0.114 * 255)) <= 1  # blue


def test_brightness_contrast_saturation_values():
    image = torch.tensor([[[100, 200]], [[50, 250]], [[0, 10]]], dtype=torch.uint8)
    assert adjust_brightness(image, 2.0).tolist() == [[[200, 255]], [[100, 255]], [[0, 20]]]
    assert torch.equal(adjust_brightness(image, 1.0), image)
    flat = adjust_contrast(image, 0.0)  # every pixel becomes the mean grey level
    assert flat.unique().numel() == 1
    assert torch.equal(adjust_saturation(image, 0.0), to_greyscale(image))
    assert torch.equal(adjust_saturation(image, 1.0), image)


def test_hue_shift_rotates_primaries_and_keeps_grey():
    red = torch.zeros(3, 1, 1, dtype=torch.uint8)
    red[0] = 255
    assert adjust_hue(red, 1 / 3).flatten().tolist() == [0, 255, 0]
    grey = torch.full((3, 2, 2), 77, dtype=torch.uint8)
    assert torch.equal(adjust_hue(grey, 0.25), grey)
    with pytest.raises(ValueError, match="shift"):
        adjust_hue(red, 0.6)


def test_hflip_boxes_odd_width():
    image = torch.zeros(3, 4, 7, dtype=torch.uint8)
    image[:, 1:3, 0:2] = 255  # columns 0..1 lit
    boxes = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 4.0, 4.0], [0.0, 0.0, 7.0, 4.0]])
    flipped, fboxes = hflip(image, boxes)
    assert fboxes.tolist() == [[5.0, 1.0, 7.0, 3.0], [3.0, 0.0, 4.0, 4.0], [0.0, 0.0, 7.0, 4.0]]
    lit = flipped[0].nonzero()
    assert lit[:, 1].min() == 5 and lit[:, 1].max() == 6  # the box [5, 7) covers the pixels
    assert torch.equal(hflip_boxes(fboxes, 7), boxes)
    assert torch.equal(hflip(flipped)[0], image)


def test_photometric_ops_leave_boxes_alone_and_are_seeded():
    image, boxes = _image(20, 31), torch.tensor([[1.0, 2.0, 10.0, 12.0]])
    augment = build_augment(AugmentConfig(greyscale=0.5, invert=0.5), seed=3)
    outs = [augment(image, boxes, torch.Generator().manual_seed(11)) for _ in range(2)]
    assert torch.equal(outs[0][0], outs[1][0])
    assert outs[0][1] is boxes and outs[0][0].dtype == torch.uint8
    other = augment(image, boxes, torch.Generator().manual_seed(12))[0]
    assert not torch.equal(other, outs[0][0])
    assert torch.equal(
        augment.fixed_copy(image, boxes, 0, 5, 1)[0], augment.fixed_copy(image, boxes, 0, 5, 1)[0]
    )
    assert not torch.equal(
        augment.fixed_copy(image, boxes, 0, 5, 1)[0], augment.fixed_copy(image, boxes, 0, 5, 2)[0]
    )


def test_compose_own_generator_advances_deterministically():
    image = _image(8, 9)
    a, b = (Compose([ColorJitter(0.5, 0.5, 0.5, 0.2)], seed=4) for _ in range(2))
    first = [a(image)[0] for _ in range(3)]
    second = [b(image)[0] for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])


def test_probabilities_zero_and_one():
    image, g = _image(), torch.Generator().manual_seed(0)
    assert torch.equal(RandomInvert(0.0)(image, None, g)[0], image)
    assert torch.equal(RandomInvert(1.0)(image, None, g)[0], invert(image))
    assert torch.equal(RandomGreyscale(1.0)(image, None, g)[0], to_greyscale(image))
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert RandomHorizontalFlip(1.0)(image, boxes, g)[1].tolist() == [[5.0, 0.0, 7.0, 2.0]]


def test_no_flip_unless_enabled():
    image, boxes = _image(6, 9), torch.tensor([[0.0, 0.0, 3.0, 3.0]])
    plain = build_augment(AugmentConfig(0, 0, 0, 0, 0, 0))
    for seed in range(20):
        out, out_boxes = plain(image, boxes, torch.Generator().manual_seed(seed))
        assert torch.equal(out, image) and torch.equal(out_boxes, boxes)
    flipping = build_augment(AugmentConfig(0, 0, 0, 0, 0, 0, horizontal_flip=True))
    xs = {
        flipping(image, boxes, torch.Generator().manual_seed(s))[1][0, 0].item() for s in range(20)
    }
    assert xs == {0.0, 6.0}


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="uint8"):
        invert(torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="3 channels"):
        to_greyscale(torch.zeros(1, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="brightness"):
        ColorJitter(brightness=1.5)
    with pytest.raises(ValueError, match="p must be"):
        RandomInvert(1.2)


def test_gaussian_blur_smooths_and_keeps_a_flat_image():
    flat = torch.full((3, 9, 9), 77, dtype=torch.uint8)
    assert torch.equal(gaussian_blur(flat, 1.0), flat)
    spike = torch.zeros(3, 9, 9, dtype=torch.uint8)
    spike[:, 4, 4] = 255
    blurred = gaussian_blur(spike, 1.0).float()
    # The peak spreads: lower at the centre, non-zero at the neighbours, symmetric.
    assert 0 < blurred[0, 4, 4] < 255 and blurred[0, 4, 5] > 0
    assert torch.equal(blurred[:, 4, 3], blurred[:, 4, 5]) and torch.equal(blurred[0], blurred[2])
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(spike, 0.0)


def test_add_noise_is_seeded_clipped_and_of_the_given_spread():
    image = torch.full((3, 64, 64), 128, dtype=torch.uint8)
    a = add_noise(image, 5.0, torch.Generator().manual_seed(1))
    b = add_noise(image, 5.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.dtype == torch.uint8
    assert 4.5 < (a.float() - 128).std().item() < 5.5
    white = torch.full((3, 8, 8), 255, dtype=torch.uint8)
    assert add_noise(white, 50.0, torch.Generator().manual_seed(2)).max().item() == 255
    assert torch.equal(add_noise(image, 0.0, torch.Generator()), image)


def test_blur_and_noise_only_when_asked_for():
    image, boxes = _image(16, 16), torch.tensor([[1.0, 1.0, 5.0, 5.0]])
    # Without them the recipe draws what it drew before they existed: same output, same RNG.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    default = build_augment(AugmentConfig())(image, boxes, g1)[0]
    explicit = build_augment(AugmentConfig(blur=0.0, noise=0.0))(image, boxes, g2)[0]
    assert torch.equal(default, explicit) and torch.equal(g1.get_state(), g2.get_state())
    only = AugmentConfig(0, 0, 0, 0, 0, 0, blur=1.0, noise=1.0)
    out, out_boxes = build_augment(only)(image, boxes, torch.Generator().manual_seed(4))
    assert not torch.equal(out, image) and torch.equal(out_boxes, boxes)
    assert torch.equal(RandomBlur(0.0)(image, None, torch.Generator())[0], image)
    assert torch.equal(RandomNoise(0.0)(image, None, torch.Generator())[0], image)
    with pytest.raises(ValueError, match="sigma"):
        RandomBlur(0.5, sigma=(2.0, 1.0))


def test_mixup_blends_and_resizes_the_other_image():
    a = torch.full((3, 5, 7), 100, dtype=torch.uint8)
    b = torch.full((3, 9, 4), 201, dtype=torch.uint8)
    mixed = mixup(a, b, 0.25)
    assert mixed.shape == (3, 5, 7) and mixed.dtype == torch.uint8
    assert (mixed == 176).all()  # 0.25 * 100 + 0.75 * 201 = 175.75
    assert torch.equal(mixup(a, b, 1.0), a)
    ramp = torch.arange(7, dtype=torch.uint8).mul(30).expand(3, 5, 7).contiguous()
    assert torch.equal(mixup(a, ramp, 0.0), ramp)  # same size: no resize
    with pytest.raises(ValueError, match="weight must be in"):
        mixup(a, b, 1.5)
    with pytest.raises(ValueError, match="mixup: expected an image"):
        mixup(a, b.float(), 0.5)


def test_scale_boxes_odd_sizes():
    boxes = torch.tensor([[0.0, 0.0, 7.0, 5.0], [1.0, 2.0, 3.0, 4.0]])
    scaled = scale_boxes(boxes, (5, 7), (10, 3))
    assert torch.allclose(scaled, torch.tensor([[0.0, 0.0, 3.0, 10.0], [3 / 7, 4.0, 9 / 7, 8.0]]))
    assert scale_boxes(torch.zeros(0, 4), (5, 7), (10, 3)).shape == (0, 4)
    with pytest.raises(ValueError, match="sizes must be positive"):
        scale_boxes(boxes, (0, 7), (10, 3))


def _ink_on_ground():
    """A 40 x 50 ground of (200, 120, 40) with a dark 4 x 10 stroke at x 18-21, y 15-24."""
    image = torch.tensor([200, 120, 40], dtype=torch.uint8)[:, None, None].repeat(1, 40, 50)
    image[:, 15:25, 18:22] = 0
    return image


def test_fade_objects_moves_ink_toward_the_ground():
    image = _ink_on_ground()
    box = torch.tensor([[16.0, 12.0, 24.0, 28.0]])
    faded = fade_objects(image, box, torch.tensor([0.25]))
    # ink: g + 0.25 * (0 - g) = 0.75 g, per channel; the flat ground is unchanged everywhere
    assert faded[:, 20, 19].tolist() == [150, 90, 30]
    ground = (image == image[:, :1, :1]).all(0)
    assert torch.equal(faded[:, ground], image[:, ground])
    assert torch.equal(fade_objects(image, box, torch.tensor([1.0])), image)
    assert (fade_objects(image, box, torch.tensor([0.0])) == image[:, :1, :1]).all()


def test_fade_objects_ramps_over_the_margin_and_leaves_the_rest():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 60, 60), generator=g, dtype=torch.uint8)
    box = torch.tensor([[20.0, 20.0, 40.0, 40.0]])  # margin 0.25: 5 px on each side
    faded = fade_objects(image, box, torch.tensor([0.0]))
    outside = torch.ones(60, 60, dtype=torch.bool)
    outside[15:45, 15:45] = False
    assert torch.equal(faded[:, outside], image[:, outside])
    # in the ramp a pixel keeps part of its difference from the ground, more further out
    ground = faded[:, 30, 30].float()[:, None]
    keep = [
        (
            (faded[:, 30, x].float() - ground[:, 0]).abs().sum()
            / (image[:, 30, x].float() - ground[:, 0]).abs().sum().clamp(min=1)
        ).item()
        for x in (16, 18, 20)
    ]
    assert keep[0] > keep[1] > keep[2] >= 0
    assert torch.equal(fade_objects(image, torch.zeros(0, 4), torch.zeros(0)), image)


def test_fade_objects_bad_input():
    image = _ink_on_ground()
    box = torch.tensor([[16.0, 12.0, 24.0, 28.0]])
    with pytest.raises(ValueError, match="expected 1 factors"):
        fade_objects(image, box, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="factors must be in"):
        fade_objects(image, box, torch.tensor([1.5]))
    with pytest.raises(ValueError, match="margin must be"):
        fade_objects(image, box, torch.tensor([0.5]), margin=-1)
    with pytest.raises(ValueError, match="Tensor\\[G, 4\\]"):
        fade_objects(image, box[0], torch.tensor([0.5]))
