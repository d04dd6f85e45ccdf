"""A recipe's pixel sizes carried over to a dataset whose images are of another size.

A preset's sizes (test and train scales, the resize cap, the working side of selective search)
are set for images of a certain size: ``demo.yaml``'s 480 px test scale is 1.5 times the demo
images' median shorter side of 313 px, and its 224 px proposals are 0.7 times it. On a dataset
with larger images (a user's 500-800 px scenes, say) the same absolute sizes shrink every object
and its proposals' working image, and small objects fall below a conv cell. So ``sppnet train
--data`` multiplies them by ``f = median shorter side of the data / data.image_side`` (the
preset's reference, when it names one), which keeps the images, and the objects in them, at the
scale relative to their own size that the recipe was tuned at.

The rule, on plain numbers (no dataset is read here):

- ``f`` is the ratio rounded to 2 decimals; within ``[0.8, 1.25]`` it is taken as 1 (the preset as
  it is), and it is clamped to ``[0.5, 2.5]`` so an unusual dataset cannot blow up the cost;
- ``model.scales`` and ``train.train_scales``: ``s * f`` rounded to a multiple of 16 px;
- ``model.max_size``: ``max_size * f`` rounded to a multiple of 100 px, at least the largest scale;
- ``data.proposals.shorter_side``: ``side * 2 ** round(log2(f))`` (powers of two only: selective
  search costs the square of its side, and few distinct sides keep proposal caches reusable;
  0, full resolution, stays 0);
- ``model.target_side`` is in resized pixels and stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sppnet.config.loader import ExperimentConfig

__all__ = ["ImageScale", "rescale_for_images"]

#: f within these bounds counts as 1: the preset's sizes are used as they are.
KEEP_RANGE = (0.8, 1.25)
#: f is clamped to these bounds.
FACTOR_RANGE = (0.5, 2.5)


@dataclass(frozen=True)
class ImageScale:
    """What :func:`rescale_for_images` did: the data's median shorter side (pixels), the
    preset's reference side (pixels, or None when it names none), and the factor applied."""

    median_side: float
    reference_side: float | None
    factor: float

    def describe(self) -> str:
        if self.reference_side is None:
            return f"median shorter side {self.median_side:g} px; the preset's sizes as they are"
        if self.factor == 1.0:
            return (
                f"median shorter side {self.median_side:g} px, near the preset's "
                f"{self.reference_side:g} px: its sizes as they are"
            )
        return (
            f"median shorter side {self.median_side:g} px against the preset's "
            f"{self.reference_side:g} px: its pixel sizes x {self.factor:g}"
        )


def _round_to(value: float, step: int) -> int:
    return max(step, math.floor(value / step + 0.5) * step)


def rescale_for_images(
    config: ExperimentConfig, median_side: float
) -> tuple[ExperimentConfig, ImageScale]:
    """``config`` with its pixel sizes scaled for images of median shorter side ``median_side``.

    Args:
        config: a preset's config; ``config.data["image_side"]`` (pixels) is the median shorter
            side its sizes were set for. Without it the config comes back unchanged.
        median_side: the median shorter side of the training images, pixels (> 0).

    Returns:
        The new config (the input is not modified) and an :class:`ImageScale` saying what was
        done. The rules are in the module docstring.
    """
    if not median_side > 0:
        raise ValueError(f"median_side must be a positive number of pixels, got {median_side}")
    reference = config.data.get("image_side")
    if reference is None:
        return config, ImageScale(float(median_side), None, 1.0)
    if not isinstance(reference, int | float) or reference <= 0:
        raise ValueError(f"data.image_side must be a positive number of pixels, got {reference!r}")
    factor = round(median_side / reference, 2)
    if KEEP_RANGE[0] <= factor <= KEEP_RANGE[1]:
        factor = 1.0
    factor = min(max(factor, FACTOR_RANGE[0]), FACTOR_RANGE[1])
    scale = ImageScale(float(median_side), float(reference), factor)
    if factor == 1.0:
        return config, scale
    scales = tuple(_round_to(s * factor, 16) for s in config.model.scales)
    train_scales = tuple(_round_to(s * factor, 16) for s in config.train.train_scales)
    max_size = max(_round_to(config.model.max_size * factor, 100), *scales, *train_scales)
    model = config.model.replace(scales=scales, max_size=max_size)
    train = config.train.replace(train_scales=train_scales)
    data: dict[str, Any] = dict(config.data)
    proposals = dict(data.get("proposals") or {})
    side = proposals.get("shorter_side")
    if side:
        proposals["shorter_side"] = int(side * 2 ** round(math.log2(factor)))
        data["proposals"] = proposals
    return ExperimentConfig(model, train, data), scale
