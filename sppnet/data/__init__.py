"""Datasets: safe image decoding, the PASCAL VOC and COCO readers, MNIST and the demo dataset.

Every dataset item is ``(image, target)``: ``image`` Tensor[3, H, W] uint8 RGB and ``target`` the
dict documented in ``docs/data.md`` (boxes xyxy float32 in 0-based pixels, labels 1..C with 0 the
background, never present in a target).
"""

from sppnet.data.errors import AnnotationError, ImageReadError
from sppnet.data.images import decode_image, image_from_array, read_image, read_image_size

__all__ = [
    "AnnotationError",
    "ImageReadError",
    "decode_image",
    "image_from_array",
    "read_image",
    "read_image_size",
]
