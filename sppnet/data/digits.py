"""The 5,000 MNIST digits of :func:`sppnet.data.mnist.load_mnist_5k`, rendered at any size.

A digit "at size s" is the 28 x 28 MNIST picture (digit plus its 4 px margin) resized to
``s x s`` pixels: bilinear with antialiasing (area-like averaging when shrinking, smooth strokes
when enlarging), grey replicated to three channels. This is the data of the multi-size
experiment: the same digits shown at 20 to 112 px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from sppnet.data.mnist import load_mnist_5k

__all__ = ["DIGIT_CLASSES", "DigitsDataset", "render_digits", "split_digits"]

DIGIT_CLASSES = [str(d) for d in range(10)]


def render_digits(
    digits: Tensor | list[Tensor], size: int, canvas: tuple[int, int] | None = None
) -> Tensor:
    """Render 28 x 28 digits at ``size`` pixels.

    Args:
        digits: Tensor[N, H, W] uint8 (or a list of Tensor[H, W] uint8), ink bright.
        size: the digit's side in pixels (>= 1).
        canvas: ``(height, width)`` of a black canvas (each side >= ``size``) on which the digit
            is centred, e.g. ``(28, 56)`` for a wide picture; ``None``: the image is the digit.

    Returns:
        Tensor[N, 3, size, size] (or Tensor[N, 3, height, width]) float32 in [0, 1].
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"render_digits: size must be a positive int, got {size!r}")
    if isinstance(digits, (list, tuple)):
        digits = torch.stack(list(digits))
    if not isinstance(digits, Tensor) or digits.dim() != 3 or digits.dtype != torch.uint8:
        raise ValueError("render_digits: expected Tensor[N, H, W] uint8 digits")
    x = digits.unsqueeze(1).float() / 255.0
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    x = x.clamp_(0.0, 1.0)
    if canvas is not None:
        height, width = canvas
        if height < size or width < size:
            raise ValueError(f"render_digits: canvas {canvas} is smaller than the digit ({size})")
        top, left = (height - size) // 2, (width - size) // 2
        x = F.pad(x, (left, width - size - left, top, height - size - top))
    return x.expand(-1, 3, -1, -1).contiguous()


def split_digits(
    labels: Tensor, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A stratified train/test split: ``(train_indices, test_indices)``, each sorted, Tensor[int64].

    Every class puts ``round(test_fraction * count)`` of its digits (chosen by a permutation
    seeded with ``seed``) into the test part.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split_digits: test_fraction must be in (0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


class DigitsDataset(Dataset):
    """``(Tensor[28, 28] uint8, int label)`` items: one part of the 5,000 MNIST digits.

    Rendering at a size happens per batch (see
    :class:`sppnet.engine.classification.MultiSizeCollate` with :func:`render_digits`), so one
    dataset serves every training size.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.
        test_fraction, seed: the stratified split (:func:`split_digits`).
        images, labels: digits to use instead of loading the bundled file (Tensor[N, 28, 28]
            uint8 and Tensor[N] int64).
    """

    classes = DIGIT_CLASSES

    def __init__(
        self,
        split: str = "train",
        test_fraction: float = 0.2,
        seed: int = 0,
        images: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> None:
        if split not in ("train", "test", "all"):
            raise ValueError(f"DigitsDataset: split must be train, test or all, got {split!r}")
        if (images is None) != (labels is None):
            raise ValueError("DigitsDataset: give both images and labels, or neither")
        if images is None:
            images, labels = load_mnist_5k()
        assert labels is not None
        if images.dim() != 3 or images.dtype != torch.uint8 or len(images) != len(labels):
            raise ValueError("DigitsDataset: images must be Tensor[N, H, W] uint8 matching labels")
        if split != "all":
            train, test = split_digits(labels, test_fraction, seed)
            keep = train if split == "train" else test
            images, labels = images[keep], labels[keep]
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])
