"""The interface every proposal source follows, and the box checks they share.

A *proposal source* is a callable ``(image, image_id) -> boxes``:

- ``image``: Tensor[3, H, W] uint8, RGB (what :func:`sppnet.data.images.read_image` returns);
- ``image_id``: the dataset's id of the image (sources that look proposals up, like
  :class:`~sppnet.proposals.mat_files.MatFileProposals`, need it; generators ignore it);
- ``boxes``: Tensor[M, 4] float32, xyxy in original-image pixels, 0-based with exclusive right and
  bottom edges (a box covering pixel columns 0..9 has x1 = 0, x2 = 10), the contract of
  docs/architecture.md. Every box satisfies ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``.

Each source also has a ``name`` and a ``params()`` dict (JSON-serialisable): together they say
exactly what produced a set of boxes, which is what :class:`~sppnet.proposals.cache.ProposalCache`
records in each file to tell a stale cache from a valid one.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import Tensor

__all__ = ["ProposalSource", "check_image", "check_proposals", "unique_boxes"]


class ProposalSource(abc.ABC):
    """Base class of proposal sources (selective search, ``.mat`` files, sliding windows, caches).

    Subclasses set :attr:`name` and implement :meth:`params` and :meth:`__call__`.
    """

    #: Short identifier of the method, e.g. ``"selective_search"``; part of the cache key.
    name: str

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The settings that determine the boxes (JSON-serialisable); part of the cache key."""

    @abc.abstractmethod
    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        """Proposals for one image: Tensor[M, 4] float32 xyxy in original-image pixels."""

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({settings})"


def check_image(image: Tensor, what: str = "image") -> tuple[int, int]:
    """Validate a Tensor[3, H, W] uint8 image and return ``(H, W)``.

    Raises:
        TypeError: ``image`` is not a uint8 tensor.
        ValueError: ``image`` does not have shape [3, H, W] with H, W >= 1.
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise TypeError(f"{what}: expected dtype torch.uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"{what}: expected shape [3, H, W] (RGB), got {list(image.shape)}")
    return int(image.shape[1]), int(image.shape[2])


def check_proposals(boxes: Tensor, image_size: tuple[int, int], what: str = "proposals") -> None:
    """Check that ``boxes`` follow the proposal contract for an image of ``image_size`` (H, W).

    Raises:
        TypeError: not a float32 tensor.
        ValueError: wrong shape, a non-finite coordinate, an empty box or one outside the image;
            the message names ``what`` and the first offending row.
    """
    if not isinstance(boxes, Tensor) or boxes.dtype != torch.float32:
        got = boxes.dtype if isinstance(boxes, Tensor) else type(boxes).__name__
        raise TypeError(f"{what}: expected a float32 tensor, got {got}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what}: expected shape [M, 4], got {list(boxes.shape)}")
    height, width = image_size
    x1, y1, x2, y2 = boxes.unbind(1)
    bad = ~torch.isfinite(boxes).all(1)
    bad |= (x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height) | (x2 <= x1) | (y2 <= y1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{what}: box {row} = {boxes[row].tolist()} is not a non-empty xyxy box inside the "
            f"{width}x{height} image ({int(bad.sum())} of {len(boxes)} boxes are invalid)"
        )


def unique_boxes(boxes: Tensor) -> Tensor:
    """Indices of the first occurrence of each distinct box, in their original order.

    Args:
        boxes: Tensor[M, 4], any dtype.

    Returns:
        Tensor[K] int64, increasing, K <= M.
    """
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    _, inverse = torch.unique(boxes, dim=0, return_inverse=True)
    # The smallest row index among the rows that share a value is that value's first occurrence.
    rows = torch.arange(len(boxes), device=boxes.device)
    first = torch.full((int(inverse.max()) + 1,), len(boxes), device=boxes.device)
    first.scatter_reduce_(0, inverse, rows, "amin")
    return first.sort().values
