"""Datasets: safe image decoding, the COCO, YOLO and PASCAL VOC readers behind one entry point
(:func:`open_detection_dataset`), their writers, MNIST and the demo dataset.

Every dataset item is ``(image, target)``: ``image`` Tensor[3, H, W] uint8 RGB and ``target`` the
dict documented in ``docs/data.md`` (boxes xyxy float32 in 0-based pixels, labels 1..C with 0 the
background, never present in a target).
"""

from sppnet.data.coco import COCODetection
from sppnet.data.demo import DEMO_CLASSES, load_demo, make_demo_dataset
from sppnet.data.detection import DetectionDataset
from sppnet.data.errors import AnnotationError, DatasetLayoutError, ImageReadError
from sppnet.data.formats import FORMATS, detect_format, list_splits, open_detection_dataset
from sppnet.data.images import decode_image, image_from_array, read_image, read_image_size
from sppnet.data.mnist import load_mnist_5k
from sppnet.data.splits import DatasetSubset, TrainValSplit, split_dataset, train_val_datasets
from sppnet.data.summary import summarize_dataset
from sppnet.data.target import validate_target
from sppnet.data.voc import VOC_CLASSES, VOCDetection
from sppnet.data.yolo import YOLODetection

__all__ = [
    "DEMO_CLASSES",
    "FORMATS",
    "VOC_CLASSES",
    "AnnotationError",
    "COCODetection",
    "DatasetLayoutError",
    "DatasetSubset",
    "DetectionDataset",
    "ImageReadError",
    "TrainValSplit",
    "VOCDetection",
    "YOLODetection",
    "decode_image",
    "detect_format",
    "image_from_array",
    "list_splits",
    "load_demo",
    "load_mnist_5k",
    "make_demo_dataset",
    "open_detection_dataset",
    "read_image",
    "read_image_size",
    "split_dataset",
    "summarize_dataset",
    "train_val_datasets",
    "validate_target",
]
