"""Image -> normalised, resized batch, once per scale, recording the exact resize factors.

The detector's input is a list of images of different sizes (``Tensor[3, H, W]``, uint8 in
[0, 255] or float in [0, 1], RGB). For every scale ``s`` each image is resized (bilinear,
antialiased) so its shorter side is ``s`` (longer side capped at ``max_size``), normalised with the
backbone's mean/std. The images of one scale are kept as a list rather than a zero-padded batch:
padding would change the conv features near the border of the smaller images, so a detection
would depend on which other images shared its batch. :meth:`ScaledBatch.padded` stacks them when
that is wanted (all images of the same size stack exactly). Because sizes are rounded to whole
pixels, the effective factor differs slightly per axis; both are recorded so boxes map exactly.

The cap on the longer side bounds the cost of any image: a 3 x 20000 strip at scale 224 would
otherwise become 224 x 1.5 million pixels (4 GB as float32). Capped, such an image ends up below
the size a backbone accepts; :class:`InputSizeCheck` refuses it up front with a message that says
so, and :func:`resize_bounded` applies the same rule for single-image commands (``sppnet
classify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet.models.scales import resize_factor, resized_size

__all__ = ["DetectionTransform", "InputSizeCheck", "ScaledBatch", "resize_bounded"]


@dataclass
class ScaledBatch:
    """One scale's batch.

    Attributes:
        images: N tensors [3, h_i, w_i] float32, resized and normalised.
        factors: Tensor[N, 2] float32 (fx, fy): resized pixels per original pixel, per axis.
        scale: the requested shorter side in pixels.
    """

    images: list[Tensor]
    factors: Tensor
    scale: int

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """The resized (height, width) of each image."""
        return [(int(t.shape[1]), int(t.shape[2])) for t in self.images]

    def padded(self, size_divisible: int = 1) -> Tensor:
        """Tensor[N, 3, H_max, W_max]: the images zero-padded at the bottom/right and stacked."""
        sizes = self.image_sizes
        d = size_divisible
        hmax = -(-max(s[0] for s in sizes) // d) * d
        wmax = -(-max(s[1] for s in sizes) // d) * d
        batch = self.images[0].new_zeros((len(self.images), 3, hmax, wmax))
        for i, img in enumerate(self.images):
            batch[i, :, : img.shape[1], : img.shape[2]].copy_(img)
        return batch


@dataclass(frozen=True)
class InputSizeCheck:
    """Refuse images that some scale would resize below ``min_side`` pixels on a side.

    Call it with ``(height, width)`` of the original image; it raises ``ValueError`` (naming
    the size, the scale and the cap) or returns None. Picklable, so worker processes can check
    an image before spending time on its proposals.

    Attributes:
        scales: shorter sides in pixels.
        max_size: cap on the longer side after resizing.
        min_side: smallest side the network accepts (``backbone.min_input_size``).
    """

    scales: tuple[int, ...]
    max_size: int
    min_side: int

    def __call__(self, height: int, width: int) -> None:
        for scale in self.scales:
            new_h, new_w = resized_size(
                height, width, resize_factor(height, width, scale, self.max_size)
            )
            if min(new_h, new_w) < self.min_side:
                ratio = max(height, width) / min(height, width)
                raise ValueError(
                    f"a {width}x{height} px image (aspect ratio {ratio:.0f}:1) becomes "
                    f"{new_w}x{new_h} px at scale {scale} with the longer side capped at "
                    f"{self.max_size} px, below the network's minimum side of {self.min_side} px"
                )


def resize_bounded(image: Tensor, scale: int, max_size: int | None) -> Tensor:
    """Resize so the shorter side is ``scale`` pixels and the longer at most ``max_size``.

    Args:
        image: Tensor[3, H, W] uint8 (or float in 0..255).
        scale: shorter side in pixels (>= 1).
        max_size: cap on the longer side in pixels; ``None``: no cap.

    Returns:
        Tensor[3, h, w] float32 in [0, 1] (bilinear, antialiased; the factor of
        :func:`~sppnet.models.scales.resize_factor`).
    """
    height, width = int(image.shape[-2]), int(image.shape[-1])
    size = resized_size(height, width, resize_factor(height, width, scale, max_size))
    x = image.unsqueeze(0).float()
    if size != (height, width):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x[0] / 255.0).clamp_(0.0, 1.0)


class DetectionTransform(nn.Module):
    """Resize and normalise a list of images at each of ``scales``.

    Args:
        mean, std: per-channel normalisation of RGB values in [0, 1] (the backbone's).
        scales: shorter-side lengths in pixels.
        max_size: cap on the longer side after resizing.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        scales: Sequence[int],
        max_size: int,
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std must have 3 values, got {mean} and {std}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {std}")
        if not scales:
            raise ValueError("scales must not be empty")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1))
        self.scales = tuple(int(s) for s in scales)
        self.max_size = int(max_size)

    def extra_repr(self) -> str:
        return f"scales={self.scales}, max_size={self.max_size}"

    def size_check(self, min_side: int) -> InputSizeCheck:
        """An :class:`InputSizeCheck` for this transform's scales and cap."""
        return InputSizeCheck(self.scales, self.max_size, int(min_side))

    def image_factors(self, height: int, width: int) -> list[float]:
        """The nominal resize factor of each scale for an image of this size."""
        return [resize_factor(height, width, s, self.max_size) for s in self.scales]

    def to_float(self, image: Tensor, index: int = 0) -> Tensor:
        """Check one image and return it as float32 RGB in [0, 1] (no copy if already so)."""
        if not isinstance(image, Tensor):
            raise TypeError(f"images[{index}] must be a Tensor, got {type(image).__name__}")
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"images[{index}] must be Tensor[3, H, W] (RGB), got shape {tuple(image.shape)}"
            )
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"images[{index}] is empty: shape {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            return image.float().div_(255.0)
        if not image.is_floating_point():
            raise TypeError(f"images[{index}] must be uint8 or float, got {image.dtype}")
        return image.float()

    def forward(
        self, images: Sequence[Tensor], scales: Sequence[int] | None = None
    ) -> list[ScaledBatch]:
        """Return one :class:`ScaledBatch` per scale, in the order of ``scales`` (default: the
        transform's own)."""
        if len(images) == 0:
            raise ValueError("images must hold at least one image")
        scales = self.scales if scales is None else tuple(int(s) for s in scales)
        if not scales or any(s < 1 for s in scales):
            raise ValueError(f"scales must be positive pixel sizes, got {scales}")
        floats = [self.to_float(img, i) for i, img in enumerate(images)]
        return [self._batch(floats, s) for s in scales]

    def _batch(self, images: list[Tensor], scale: int) -> ScaledBatch:
        resized, factors = [], []
        for img in images:
            h, w = img.shape[-2:]
            nh, nw = resized_size(h, w, resize_factor(h, w, scale, self.max_size))
            if (nh, nw) == (h, w):
                out = img
            else:
                out = F.interpolate(
                    img[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
                )[0]
            resized.append((out - self.mean) / self.std)
            factors.append((nw / w, nh / h))
        factors_t = torch.tensor(factors, dtype=torch.float32, device=images[0].device)
        return ScaledBatch(resized, factors_t, scale)
