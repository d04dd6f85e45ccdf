"""Datasets: safe image decoding, the PASCAL VOC and COCO readers, MNIST and the demo dataset.

Every dataset item is ``(image, target)``: ``image`` Tensor[3, H, W] uint8 RGB and ``target`` the
dict documented in ``docs/data.md`` (boxes xyxy float32 in 0-based pixels, labels 1..C with 0 the
background, never present in a target).
"""

from sppnet.data.coco import COCODetection
from sppnet.data.demo import DEMO_CLASSES, load_demo, make_demo_dataset
from sppnet.data.detection import DetectionDataset
from sppnet.data.errors import AnnotationError, ImageReadError
from sppnet.data.images import decode_image, image_from_array, read_image, read_image_size
from sppnet.data.mnist import load_mnist_5k
from sppnet.data.target import validate_target
from sppnet.data.voc import VOC_CLASSES, VOCDetection

__all__ = [
    "DEMO_CLASSES",
    "VOC_CLASSES",
    "AnnotationError",
    "COCODetection",
    "DetectionDataset",
    "ImageReadError",
    "VOCDetection",
    "decode_image",
    "image_from_array",
    "load_demo",
    "load_mnist_5k",
    "make_demo_dataset",
    "read_image",
    "read_image_size",
    "validate_target",
]
