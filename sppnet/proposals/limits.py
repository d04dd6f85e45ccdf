"""A proposal source that keeps another source's windows above a size relative to the image.

``sppnet detect --weights imagenet`` drops windows narrower or lower than a fraction of the
image's shorter side (an ImageNet classifier needs context); the fraction gives a different
``min_size`` in pixels for each image, so it cannot be a fixed setting of the wrapped source.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sppnet.proposals.base import ProposalSource, check_image

__all__ = ["LimitedProposals"]


class LimitedProposals(ProposalSource):
    """``source``'s boxes, minus those smaller than ``max(min_size, min_fraction * min(H, W))``
    on either side, then the first ``max_proposals`` (in ``source``'s order).

    Wrap a source that returns *all* its boxes (e.g. ``SelectiveSearch(max_proposals=None)``):
    capping before this filter would keep fewer than ``max_proposals`` large windows.

    Args:
        source: the source to filter.
        min_fraction: in [0, 1): minimum box side as a fraction of the image's shorter side.
        min_size: minimum box side in pixels.
        max_proposals: keep at most this many; ``None``: all.
    """

    name = "limited"

    def __init__(
        self,
        source: ProposalSource,
        min_fraction: float = 0.0,
        min_size: float = 0.0,
        max_proposals: int | None = None,
    ) -> None:
        if not 0.0 <= min_fraction < 1.0 or min_size < 0:
            raise ValueError(
                f"LimitedProposals: need 0 <= min_fraction < 1 and min_size >= 0, got "
                f"{min_fraction} and {min_size}"
            )
        if max_proposals is not None and max_proposals < 1:
            raise ValueError(f"LimitedProposals: max_proposals must be >= 1, got {max_proposals}")
        self.source = source
        self.min_fraction = float(min_fraction)
        self.min_size = float(min_size)
        self.max_proposals = max_proposals

    def params(self) -> dict[str, Any]:
        return {
            "source": self.source.name,
            "source_params": self.source.params(),
            "min_fraction": self.min_fraction,
            "min_size": self.min_size,
            "max_proposals": self.max_proposals,
        }

    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        height, width = check_image(image)
        boxes = self.source(image, image_id)
        smallest = max(self.min_size, self.min_fraction * min(height, width))
        boxes = boxes[((boxes[:, 2:] - boxes[:, :2]) >= smallest).all(1)]
        return boxes if self.max_proposals is None else boxes[: self.max_proposals]
