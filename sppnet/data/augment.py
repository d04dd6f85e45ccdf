"""Photometric augmentation for detection, seeded by a :class:`torch.Generator`.

Functions work on one image ``Tensor[3, H, W] uint8`` (RGB) and return a new one of the same
shape and dtype; the colour operations are torchvision's (``torchvision.transforms.v2.functional``)
so their arithmetic is the one the ecosystem uses. Only :func:`hflip` moves pixels, and it is the
only one that changes boxes (``Tensor[G, 4]`` xyxy float, 0-based pixels, exclusive right edge,
as in the targets of ``docs/data.md``).

The transforms are callables ``(image, boxes, generator) -> (image, boxes)`` that draw their
randomness from ``generator`` only, so the same generator state gives the same output; compose
them with :class:`Compose`, or build the usual recipe with :func:`build_augment`.
Horizontal flipping is off unless asked for: it turns a digit into something that is not one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

__all__ = [
    "AugmentConfig",
    "ColorJitter",
    "Compose",
    "RandomBlur",
    "RandomGreyscale",
    "RandomHorizontalFlip",
    "RandomInvert",
    "RandomNoise",
    "add_noise",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "build_augment",
    "fade_objects",
    "gaussian_blur",
    "hflip",
    "hflip_boxes",
    "invert",
    "mixup",
    "scale_boxes",
    "to_greyscale",
]

FADE_FACTORS = (0.15, 1.0)
"""Range of the factor by which a training fade (:func:`fade_objects`) scales an object's
contrast against its surroundings."""

MIXUP_WEIGHTS = (0.3, 0.7)
"""Range of the weight of the first image in a training mixup (:func:`mixup`): both images'
objects keep 30-70 % of their contrast over the other image's ground."""


def _check_image(image: Tensor, name: str) -> None:
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"{name}: expected an image Tensor[3, H, W] uint8")
    if image.shape[0] != 3:
        raise ValueError(f"{name}: expected 3 channels, got {image.shape[0]}")


def adjust_brightness(image: Tensor, factor: float) -> Tensor:
    """``image * factor``, clipped to 0..255 (``factor >= 0``; 1 leaves it unchanged)."""
    _check_image(image, "adjust_brightness")
    return TF.adjust_brightness(image, factor)


def adjust_contrast(image: Tensor, factor: float) -> Tensor:
    """Blend with the image's mean grey level: ``mean + factor * (image - mean)``, clipped."""
    _check_image(image, "adjust_contrast")
    return TF.adjust_contrast(image, factor)


def adjust_saturation(image: Tensor, factor: float) -> Tensor:
    """Blend with the image's greyscale: 0 gives grey, 1 the image, 2 doubles the saturation."""
    _check_image(image, "adjust_saturation")
    return TF.adjust_saturation(image, factor)


def adjust_hue(image: Tensor, shift: float) -> Tensor:
    """Rotate the hue by ``shift`` turns (``-0.5..0.5``) in HSV; grey pixels are unchanged."""
    _check_image(image, "adjust_hue")
    if not -0.5 <= shift <= 0.5:
        raise ValueError(f"adjust_hue: shift must be in [-0.5, 0.5], got {shift}")
    return TF.adjust_hue(image, shift)


def to_greyscale(image: Tensor) -> Tensor:
    """ITU-R 601 luma (``0.2989 R + 0.587 G + 0.114 B``) copied to the three channels."""
    _check_image(image, "to_greyscale")
    return TF.rgb_to_grayscale(image, num_output_channels=3)


def invert(image: Tensor) -> Tensor:
    """``255 - image``: light ink on a dark ground becomes dark ink on a light one."""
    _check_image(image, "invert")
    return 255 - image


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (> 0), kernel ``2 * ceil(3 sigma) + 1``
    wide, borders reflected: soft edges, as of ink blended into paper or an out-of-focus lens."""
    _check_image(image, "gaussian_blur")
    if not sigma > 0:
        raise ValueError(f"gaussian_blur: sigma must be > 0, got {sigma}")
    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(image, [size, size], [sigma, sigma])


def add_noise(image: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """``image`` plus Gaussian noise of ``sigma`` grey levels (>= 0) per pixel and channel,
    drawn from ``generator``, rounded and clipped to 0..255."""
    _check_image(image, "add_noise")
    if not sigma >= 0:
        raise ValueError(f"add_noise: sigma must be >= 0, got {sigma}")
    noise = torch.randn(image.shape, generator=generator, dtype=torch.float32) * sigma
    return (image.float() + noise).round_().clamp_(0, 255).to(torch.uint8)


def hflip_boxes(boxes: Tensor, width: int) -> Tensor:
    """Boxes of a width pixel wide image, mirrored: x1' = width - x2, x2' = width - x1."""
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"hflip_boxes: expected Tensor[G, 4] boxes, got {tuple(boxes.shape)}")
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def hflip(image: Tensor, boxes: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Mirror the image left-right, and its boxes with it (:func:`hflip_boxes`)."""
    _check_image(image, "hflip")
    flipped = image.flip(-1)
    return flipped, None if boxes is None else hflip_boxes(boxes, image.shape[-1])


def scale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Boxes ``Tensor[G, 4]`` xyxy of an image of ``from_size = (H, W)`` pixels, mapped onto the
    same image resized to ``to_size = (H', W')``: x times ``W' / W``, y times ``H' / H``."""
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"scale_boxes: expected Tensor[G, 4] boxes, got {tuple(boxes.shape)}")
    (h, w), (h2, w2) = from_size, to_size
    if min(h, w, h2, w2) <= 0:
        raise ValueError(f"scale_boxes: sizes must be positive, got {from_size} -> {to_size}")
    factors = boxes.new_tensor([w2 / w, h2 / h, w2 / w, h2 / h])
    return boxes * factors


def _ramp(centres: Tensor, low: float, high: float, margin: float) -> Tensor:
    """1 on ``[low, high]``, falling linearly to 0 over ``margin`` pixels on either side."""
    if margin <= 0:
        return ((centres >= low) & (centres <= high)).float()
    inside = torch.minimum(centres - (low - margin), (high + margin) - centres) / margin
    return inside.clamp_(0.0, 1.0)


def fade_objects(image: Tensor, boxes: Tensor, factors: Tensor, margin: float = 0.25) -> Tensor:
    """Lower each object's contrast against its surroundings (an object-level photometric
    augmentation, after the box-only colour operations of Zoph et al. 2019, "Learning Data
    Augmentation Strategies for Object Detection").

    Inside box ``k`` every pixel moves toward the box's ground colour ``g_k``:
    ``x' = g_k + factors[k] * (x - g_k)``, with ``g_k`` the per-channel median of the pixels on
    the border of the box grown by ``margin`` times its width and height; across that margin the
    effect ramps linearly to nothing, so no edge marks the box. Dark ink on a light ground (or
    the reverse) becomes faint ink on the same ground; the rest of the image is untouched.

    Args:
        image: ``Tensor[3, H, W]`` uint8.
        boxes: ``Tensor[G, 4]`` xyxy pixels (exclusive right edge); boxes are faded in order.
        factors: ``Tensor[G]`` in ``[0, 1]``: 1 leaves the object as it is, 0 paints its box
            (and part of the margin) in the ground colour.
        margin: the ramp's width as a fraction of the box's size (>= 0).
    """
    _check_image(image, "fade_objects")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"fade_objects: expected Tensor[G, 4] boxes, got {tuple(boxes.shape)}")
    if factors.shape != boxes.shape[:1]:
        raise ValueError(
            f"fade_objects: expected {boxes.shape[0]} factors, got {tuple(factors.shape)}"
        )
    if len(factors) and not bool(((factors >= 0) & (factors <= 1)).all()):
        raise ValueError("fade_objects: factors must be in [0, 1]")
    if not margin >= 0:
        raise ValueError(f"fade_objects: margin must be >= 0, got {margin}")
    height, width = image.shape[-2:]
    out = image.float()
    for (x1, y1, x2, y2), factor in zip(boxes.tolist(), factors.tolist(), strict=True):
        mx, my = margin * (x2 - x1), margin * (y2 - y1)
        left, top = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
        right, bottom = min(width, math.ceil(x2 + mx)), min(height, math.ceil(y2 + my))
        if right - left < 2 or bottom - top < 2 or factor == 1.0:
            continue
        patch = out[:, top:bottom, left:right]
        border = torch.cat([patch[:, 0], patch[:, -1], patch[:, :, 0], patch[:, :, -1]], dim=1)
        ground = border.median(dim=1).values[:, None, None]
        wy = _ramp(torch.arange(top, bottom) + 0.5, y1, y2, my)
        wx = _ramp(torch.arange(left, right) + 0.5, x1, x2, mx)
        weight = torch.minimum(wy[:, None], wx[None, :])
        patch += weight * (factor - 1.0) * (patch - ground)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def mixup(image: Tensor, other: Tensor, weight: float) -> Tensor:
    """``weight * image + (1 - weight) * other``, rounded to uint8, with ``other`` first resized
    (bilinear, antialiased) to ``image``'s size; map ``other``'s boxes with :func:`scale_boxes`.

    Mixup for detection (Zhang et al. 2019, "Bag of Freebies for Training Object Detection
    Neural Networks"; YOLOX): both images' objects are kept as targets, each now at a fraction
    of its contrast and over the other image's texture.
    """
    _check_image(image, "mixup")
    _check_image(other, "mixup")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mixup: weight must be in [0, 1], got {weight}")
    size = list(image.shape[-2:])
    if list(other.shape[-2:]) != size:
        other = TF.resize(other, size, antialias=True)
    mixed = weight * image.float() + (1.0 - weight) * other.float()
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _chance(generator: torch.Generator, p: float) -> bool:
    return p > 0 and float(torch.rand((), generator=generator, dtype=torch.float64)) < p


class ColorJitter:
    """Brightness, contrast and saturation factors drawn from ``[1 - x, 1 + x]`` and a hue shift
    from ``[-hue, hue]``, applied in a random order (as torchvision's ``ColorJitter``)."""

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
    ) -> None:
        for name, value, top in (
            ("brightness", brightness, 1.0),
            ("contrast", contrast, 1.0),
            ("saturation", saturation, 1.0),
            ("hue", hue, 0.5),
        ):
            if not 0.0 <= value <= top:
                raise ValueError(f"ColorJitter: {name} must be in [0, {top}], got {value}")
        self.brightness, self.contrast = brightness, contrast
        self.saturation, self.hue = saturation, hue

    def __call__(
        self, image: Tensor, boxes: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        ops = (
            (adjust_brightness, self.brightness, 1.0),
            (adjust_contrast, self.contrast, 1.0),
            (adjust_saturation, self.saturation, 1.0),
            (adjust_hue, self.hue, 0.0),
        )
        for k in torch.randperm(len(ops), generator=generator).tolist():
            op, spread, centre = ops[k]
            if spread > 0:
                image = op(image, _uniform(generator, centre - spread, centre + spread))
        return image, boxes


class RandomGreyscale:
    """:func:`to_greyscale` with probability ``p``."""

    def __init__(self, p: float) -> None:
        self.p = _probability(p, "RandomGreyscale")

    def __call__(
        self, image: Tensor, boxes: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        return (to_greyscale(image) if _chance(generator, self.p) else image), boxes


class RandomInvert:
    """:func:`invert` (ink/background polarity) with probability ``p``."""

    def __init__(self, p: float) -> None:
        self.p = _probability(p, "RandomInvert")

    def __call__(
        self, image: Tensor, boxes: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        return (invert(image) if _chance(generator, self.p) else image), boxes


class RandomBlur:
    """:func:`gaussian_blur` with probability ``p``, sigma drawn from ``sigma`` (pixels)."""

    def __init__(self, p: float, sigma: tuple[float, float] = (0.5, 1.5)) -> None:
        self.p = _probability(p, "RandomBlur")
        if not 0 < sigma[0] <= sigma[1]:
            raise ValueError(
                f"RandomBlur: sigma must be (low, high) with 0 < low <= high, got {sigma}"
            )
        self.sigma = (float(sigma[0]), float(sigma[1]))

    def __call__(
        self, image: Tensor, boxes: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        if _chance(generator, self.p):
            image = gaussian_blur(image, _uniform(generator, *self.sigma))
        return image, boxes


class RandomNoise:
    """:func:`add_noise` with probability ``p``, sigma drawn from ``sigma`` (grey levels)."""

    def __init__(self, p: float, sigma: tuple[float, float] = (2.0, 10.0)) -> None:
        self.p = _probability(p, "RandomNoise")
        if not 0 <= sigma[0] <= sigma[1]:
            raise ValueError(
                f"RandomNoise: sigma must be (low, high) with 0 <= low <= high, got {sigma}"
            )
        self.sigma = (float(sigma[0]), float(sigma[1]))

    def __call__(
        self, image: Tensor, boxes: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        if _chance(generator, self.p):
            image = add_noise(image, _uniform(generator, *self.sigma), generator)
        return image, boxes


class RandomHorizontalFlip:
    """:func:`hflip` of the image and its boxes with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = _probability(p, "RandomHorizontalFlip")

    def __call__(
        self, image: Tensor, boxes: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        if _chance(generator, self.p):
            return hflip(image, boxes)
        return image, boxes


class Compose:
    """Apply ``transforms`` in order; ``generator=None`` uses the one seeded with ``seed``."""

    def __init__(self, transforms: Sequence, seed: int = 0) -> None:
        self.transforms = list(transforms)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(
        self, image: Tensor, boxes: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        _check_image(image, "Compose")
        generator = self.generator if generator is None else generator
        for transform in self.transforms:
            image, boxes = transform(image, boxes, generator)
        return image, boxes

    def fixed_copy(
        self, image: Tensor, boxes: Tensor | None, seed: int, image_index: int, copy: int
    ) -> tuple[Tensor, Tensor | None]:
        """Copy ``copy`` of image ``image_index``: the same pixels whenever it is asked for.

        For caches that keep a few augmented versions of each image (the trunk prefix cache):
        the generator is seeded from ``(seed, image_index, copy)`` alone.
        """
        if image_index < 0 or copy < 0:
            raise ValueError("fixed_copy: image_index and copy must be >= 0")
        generator = torch.Generator().manual_seed((seed * 1_000_003 + image_index) * 1_009 + copy)
        return self(image, boxes, generator)


@dataclass(frozen=True)
class AugmentConfig:
    """The photometric recipe of :func:`build_augment` (0 turns a part off)."""

    brightness: float = 0.3
    contrast: float = 0.4
    saturation: float = 0.5
    hue: float = 0.1
    greyscale: float = 0.1
    invert: float = 0.2
    horizontal_flip: bool = False
    """Flip images and boxes with probability 1/2; only for classes with mirror symmetry."""
    blur: float = 0.0
    """Probability of a Gaussian blur, sigma 0.5-1.5 px (:class:`RandomBlur`)."""
    noise: float = 0.0
    """Probability of Gaussian noise, sigma 2-10 grey levels (:class:`RandomNoise`)."""


def build_augment(config: AugmentConfig | None = None, seed: int = 0) -> Compose:
    """Colour jitter, then greyscale, then polarity inversion, then blur and noise (each only
    when its probability is > 0, so a recipe without them draws exactly what it drew before they
    existed), then (if enabled) the flip."""
    config = config or AugmentConfig()
    transforms: list = [
        ColorJitter(config.brightness, config.contrast, config.saturation, config.hue),
        RandomGreyscale(config.greyscale),
        RandomInvert(config.invert),
    ]
    if config.blur > 0:
        transforms.append(RandomBlur(config.blur))
    if config.noise > 0:
        transforms.append(RandomNoise(config.noise))
    if config.horizontal_flip:
        transforms.append(RandomHorizontalFlip(0.5))
    return Compose(transforms, seed)


def _probability(p: float, name: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p must be in [0, 1], got {p}")
    return float(p)
