"""The project's target format, and the one place that converts annotation coordinates.

A target is a dict::

    boxes      Tensor[G, 4] float32  xyxy, 0-based pixel edges: a box covering pixel columns 0..9
                                     has x1 = 0, x2 = 10 (x2, y2 exclusive)
    labels     Tensor[G]    int64    1..num_classes; 0 is the background and never appears here
    difficult  Tensor[G]    bool     ignored by evaluation (neither a hit nor a miss)
    iscrowd    Tensor[G]    bool     a COCO crowd region (always also difficult); False for VOC
    image_id   str
    size       (H, W)       ints     of the image as read (after EXIF orientation)

Conversions:

- PASCAL VOC stores 1-based *inclusive* pixel indices, ``xmin..xmax``: the 0-based box is
  ``(xmin - 1, ymin - 1, xmax, ymax)`` (:func:`voc_to_xyxy`; :func:`xyxy_to_voc` back).
- COCO stores ``[x, y, w, h]`` with ``(x, y)`` the top-left corner in the same continuous 0-based
  pixel coordinates as ours, so the box is ``(x, y, x + w, y + h)`` (:func:`coco_to_xyxy`).

:func:`check_box` validates one box against its image (finite, positive size, inside the image up
to ``tolerance`` pixels, and clipped to it within that tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from sppnet.data.errors import AnnotationError

__all__ = [
    "TARGET_KEYS",
    "check_box",
    "coco_to_xyxy",
    "empty_target",
    "make_target",
    "make_target_arrays",
    "validate_target",
    "voc_to_xyxy",
    "xyxy_to_voc",
]

TARGET_KEYS = ("boxes", "labels", "difficult", "iscrowd", "image_id", "size")

Box = tuple[float, float, float, float]


def voc_to_xyxy(xmin: float, ymin: float, xmax: float, ymax: float) -> Box:
    """VOC 1-based inclusive ``(xmin, ymin, xmax, ymax)`` to 0-based xyxy with exclusive x2, y2."""
    return (xmin - 1.0, ymin - 1.0, float(xmax), float(ymax))


def xyxy_to_voc(box: Sequence[float]) -> tuple[int, int, int, int]:
    """0-based xyxy with integer edges to VOC's 1-based inclusive ``(xmin, ymin, xmax, ymax)``.

    Raises:
        ValueError: an edge is not an integer (VOC files hold integer pixel indices).
    """
    if any(float(v) != round(float(v)) for v in box):
        raise ValueError(f"VOC boxes need integer pixel edges, got {list(box)}")
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return (x1 + 1, y1 + 1, x2, y2)


def coco_to_xyxy(x: float, y: float, w: float, h: float) -> Box:
    """COCO ``[x, y, w, h]`` (top-left corner, 0-based continuous) to xyxy."""
    return (float(x), float(y), float(x) + float(w), float(y) + float(h))


def check_box(box: Box, size: tuple[int, int], where: str, tolerance: float = 0.0) -> Box:
    """Validate an xyxy box in an image of ``size = (H, W)``; return it clipped to the image.

    A box may stick out of the image by at most ``tolerance`` pixels on each side (it is clipped
    then); more than that, a non-finite coordinate or a non-positive width/height after clipping
    raises :class:`AnnotationError` whose message starts with ``where`` (the file and object).
    """
    height, width = size
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        raise AnnotationError(f"{where}: box {_fmt(box)} has a non-finite coordinate")
    if x2 <= x1 or y2 <= y1:
        raise AnnotationError(
            f"{where}: box {_fmt(box)} has non-positive size ({x2 - x1:g} x {y2 - y1:g} pixels)"
        )
    if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
        raise AnnotationError(
            f"{where}: box {_fmt(box)} (0-based xyxy) lies outside the {width}x{height} image"
        )
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise AnnotationError(f"{where}: box {_fmt(box)} has no area inside the image")
    return clipped


def make_target(
    boxes: Sequence[Box],
    labels: Sequence[int],
    difficult: Sequence[bool],
    iscrowd: Sequence[bool],
    image_id: str,
    size: tuple[int, int],
) -> dict:
    """Assemble a target dict from already checked per-object values."""
    arrays = make_target_arrays(boxes, labels, difficult, iscrowd, image_id, size)
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}


def make_target_arrays(
    boxes: Sequence[Box],
    labels: Sequence[int],
    difficult: Sequence[bool],
    iscrowd: Sequence[bool],
    image_id: str,
    size: tuple[int, int],
) -> dict:
    """:func:`make_target` with numpy arrays in place of tensors (how readers store targets:
    a small numpy array costs a fraction of a tensor's time and memory)."""
    count = len(boxes)
    if not (len(labels) == len(difficult) == len(iscrowd) == count):
        raise ValueError("boxes, labels, difficult and iscrowd must have the same length")
    return {
        "boxes": np.array(boxes, dtype=np.float32).reshape(count, 4),
        "labels": np.array(labels, dtype=np.int64).reshape(count),
        "difficult": np.array(difficult, dtype=np.bool_).reshape(count),
        "iscrowd": np.array(iscrowd, dtype=np.bool_).reshape(count),
        "image_id": str(image_id),
        "size": (int(size[0]), int(size[1])),
    }


def empty_target(image_id: str, size: tuple[int, int]) -> dict:
    """A target with no objects."""
    return make_target([], [], [], [], image_id, size)


def validate_target(target: dict, num_classes: int, where: str = "target") -> None:
    """Check that ``target`` follows the format above (for targets from user code).

    Raises:
        AnnotationError: naming ``where`` and the first thing that is wrong.
    """
    if not isinstance(target, dict):
        raise AnnotationError(f"{where}: a target must be a dict, got {type(target).__name__}")
    missing = [k for k in ("boxes", "labels", "difficult", "image_id", "size") if k not in target]
    if missing:
        raise AnnotationError(f"{where}: missing keys {missing}")
    boxes, labels, difficult = target["boxes"], target["labels"], target["difficult"]
    size = target["size"]
    for key, tensor, dtype in (
        ("boxes", boxes, torch.float32),
        ("labels", labels, torch.int64),
        ("difficult", difficult, torch.bool),
    ):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != dtype:
            raise AnnotationError(f"{where}: '{key}' must be a {dtype} tensor")
    count = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise AnnotationError(f"{where}: 'boxes' must have shape [G, 4], got {list(boxes.shape)}")
    if labels.shape != (count,) or difficult.shape != (count,):
        raise AnnotationError(f"{where}: 'labels' and 'difficult' must have shape [{count}]")
    if "iscrowd" in target and (
        not isinstance(target["iscrowd"], torch.Tensor)
        or target["iscrowd"].dtype != torch.bool
        or target["iscrowd"].shape != (count,)
    ):
        raise AnnotationError(f"{where}: 'iscrowd' must be a bool tensor of shape [{count}]")
    if not (isinstance(size, tuple | list) and len(size) == 2 and all(int(s) > 0 for s in size)):
        raise AnnotationError(f"{where}: 'size' must be (H, W) positive ints, got {size!r}")
    if count and (labels.min() < 1 or labels.max() > num_classes):
        raise AnnotationError(
            f"{where}: labels must be in 1..{num_classes} (0 is background), "
            f"got {sorted(set(labels.tolist()))}"
        )
    for index, box in enumerate(boxes.tolist()):
        check_box(tuple(box), (int(size[0]), int(size[1])), f"{where}, object {index}")


def _fmt(box: Box) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"
