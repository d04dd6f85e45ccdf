"""Classification data from a folder of class sub-folders (torchvision's ``ImageFolder`` layout)
read with the project's safe decoder, and the two image preparations of the classifier.

    root/cat/0001.jpg
    root/dog/xyz.png ...

Items are ``(Tensor[3, H, W] uint8 RGB, class index)``; every file is decoded by
:func:`sppnet.data.images.read_image` (EXIF orientation applied; greyscale, palette, RGBA and
16-bit files converted to 8-bit RGB; unreadable, truncated or non-image files raise
:class:`~sppnet.data.errors.ImageReadError` naming the file).

- Training (:func:`random_square_crops`): shorter side resized to ``size * 8 / 7`` (the paper's
  256 -> 224), a random ``size x size`` crop, a random horizontal flip; every image in a batch has
  the batch's size, so multi-size training changes ``size`` between batches.
- Testing (:func:`resize_shorter_side`): the whole image, aspect kept, shorter side resized to a
  given length; the SPP classifier takes the list of differently shaped images as is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from sppnet.data.images import read_image

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "random_square_crops", "resize_shorter_side"]

#: File extensions collected from the class folders (others are ignored, as torchvision does).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class ImageFolder(torchvision.datasets.ImageFolder):
    """torchvision's ``ImageFolder`` whose loader is :func:`sppnet.data.images.read_image`.

    Attributes:
        classes: class names (sub-folder names, sorted); ``class_to_idx``; ``samples``.

    Raises:
        FileNotFoundError: ``root`` has no class folder with an image in it.
    """

    def __init__(self, root: str | os.PathLike[str], extensions: Sequence[str] = IMAGE_EXTENSIONS):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: {str(root)!r} is not a directory")
        super().__init__(
            os.fspath(root),
            loader=read_image,
            is_valid_file=lambda path: path.lower().endswith(tuple(extensions)),
        )


def _resize(image: Tensor, height: int, width: int) -> Tensor:
    x = image.unsqueeze(0).float()
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(
            x, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
    return x[0]


#: Default cap on the longer side after :func:`resize_shorter_side` (torchvision's detection
#: transform uses the same 1333), so a 20000 x 3 sliver cannot become a 1.7-gigapixel image.
MAX_SIZE = 1333


def resize_shorter_side(image: Tensor, size: int, max_size: int = MAX_SIZE) -> Tensor:
    """Resize ``image`` (Tensor[3, H, W] uint8 or float in 0..255) so its shorter side is
    ``size``, keeping the aspect ratio (longer side rounded), unless that would make the longer
    side exceed ``max_size``: then the longer side becomes ``max_size`` (the shorter one less than
    ``size``). Returns float32 in [0, 1]."""
    for name, value in (("size", size), ("max_size", max_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"resize_shorter_side: {name} must be a positive int, got {value!r}")
    height, width = image.shape[-2:]
    scale = min(size / min(height, width), max_size / max(height, width))
    new = (max(1, round(height * scale)), max(1, round(width * scale)))
    return (_resize(image, *new) / 255.0).clamp_(0.0, 1.0)


def random_square_crops(images: Sequence[Tensor], size: int) -> Tensor:
    """Training views: per image, shorter side -> ``round(size * 8 / 7)``, a random
    ``size x size`` crop and a random horizontal flip (global torch RNG).

    Args:
        images: Tensor[3, H_i, W_i] uint8 each.
        size: crop side in pixels.

    Returns:
        Tensor[N, 3, size, size] float32 in [0, 1].
    """
    crops = []
    resize_to = round(size * 8 / 7)
    for image in images:
        height, width = image.shape[-2:]
        if max(height, width) * resize_to / min(height, width) > MAX_SIZE:
            # A very elongated image: take the random square from the original and resize only
            # it, rather than resizing the whole image to an unbounded longer side first.
            crops.append(_random_square_of_original(image, size, resize_to))
            continue
        resized = resize_shorter_side(image, resize_to)
        height, width = resized.shape[-2:]
        top = int(torch.randint(height - size + 1, ()))
        left = int(torch.randint(width - size + 1, ()))
        crop = resized[:, top : top + size, left : left + size]
        if bool(torch.rand(()) < 0.5):
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.stack(crops)


def _random_square_of_original(image: Tensor, size: int, resize_to: int) -> Tensor:
    """The view :func:`random_square_crops` would take, cut from the original image: a random
    square of side ``min(H, W) * size / resize_to`` (at least 1 px), resized to ``size``."""
    height, width = image.shape[-2:]
    side = max(1, round(min(height, width) * size / resize_to))
    top = int(torch.randint(height - side + 1, ()))
    left = int(torch.randint(width - side + 1, ()))
    crop = (_resize(image[:, top : top + side, left : left + side], size, size) / 255.0).clamp_(
        0.0, 1.0
    )
    if bool(torch.rand(()) < 0.5):
        crop = crop.flip(-1)
    return crop
