"""What ``sppnet data check`` reports about a dataset: counts per class, objects per image and
the range of box sizes, from the targets alone (no image is decoded)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["summarize_dataset"]


def summarize_dataset(dataset: Any, indices: Iterable[int] | None = None) -> dict[str, Any]:
    """Statistics of the targets of ``dataset`` (all images, or ``indices``).

    Returns:
        A JSON-ready dict: ``images``, ``objects``, ``per_class`` (name -> boxes),
        ``difficult``, ``crowd``, ``objects_per_image`` (``min``, ``median``, ``mean``, ``max``,
        ``empty``: images without a box), ``box_width`` / ``box_height`` (pixels: ``min``,
        ``median``, ``max``; ``None`` without boxes) and ``box_relative_size`` (``sqrt(box area
        / image area)``: ``min``, ``median``, ``max``).
    """
    indices = range(len(dataset)) if indices is None else list(indices)
    per_class = dict.fromkeys(dataset.classes, 0)
    counts, widths, heights, relative, sides = [], [], [], [], []
    difficult = crowd = 0
    for index in indices:
        target = dataset.get_target(index)
        labels = target["labels"].numpy()
        boxes = target["boxes"].numpy().astype(np.float64)
        for label, number in zip(*np.unique(labels, return_counts=True), strict=True):
            per_class[dataset.classes[label - 1]] += int(number)
        counts.append(len(labels))
        difficult += int(target["difficult"].sum())
        crowd += int(target["iscrowd"].sum()) if "iscrowd" in target else 0
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        widths.append(w)
        heights.append(h)
        image_h, image_w = target["size"]
        sides.append(np.asarray([min(image_h, image_w)], dtype=np.float64))
        relative.append(np.sqrt(w * h / (image_h * image_w)))
    counts_array = np.asarray(counts, dtype=np.int64)
    return {
        "images": len(counts),
        "objects": int(counts_array.sum()),
        "per_class": per_class,
        "difficult": difficult,
        "crowd": crowd,
        "objects_per_image": {
            "min": int(counts_array.min()) if counts else None,
            "median": float(np.median(counts_array)) if counts else None,
            "mean": float(counts_array.mean()) if counts else None,
            "max": int(counts_array.max()) if counts else None,
            "empty": int((counts_array == 0).sum()),
        },
        "box_width": _range(widths),
        "box_height": _range(heights),
        "box_relative_size": _range(relative),
        "image_shorter_side": _range(sides),
    }


def _range(parts: list[np.ndarray]) -> dict[str, float] | None:
    values = np.concatenate(parts) if parts else np.zeros(0)
    if not values.size:
        return None
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }
