"""Image -> normalised, resized batch, once per scale, recording the exact resize factors.

The detector's input is a list of images of different sizes (``Tensor[3, H, W]``, uint8 in
[0, 255] or float in [0, 1], RGB). For every scale ``s`` each image is resized (bilinear,
antialiased) so its shorter side is ``s`` (longer side capped at ``max_size``), normalised with the
backbone's mean/std. The images of one scale are kept as a list rather than a zero-padded batch:
padding would change the conv features near the border of the smaller images, so a detection
would depend on which other images shared its batch. :meth:`ScaledBatch.padded` stacks them when
that is wanted (all images of the same size stack exactly). Because sizes are rounded to whole
pixels, the effective factor differs slightly per axis; both are recorded so boxes map exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet.models.scales import resize_factor, resized_size

__all__ = ["DetectionTransform", "ScaledBatch"]


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
