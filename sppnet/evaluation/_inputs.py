"""Reading and checking the per-image prediction and target dicts, for every metric.

Everything becomes numpy on the host, once per image: the per-image work is a handful of tiny
array operations, for which numpy has none of torch's per-op overhead (and none of its
thread-pool wake-ups, which cost milliseconds per call on a busy 2-core machine).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ImageInputs", "check_classes", "read_inputs"]


@dataclass(frozen=True)
class ImageInputs:
    """One image's detections and ground truth, checked, as numpy arrays.

    ``boxes`` float64 [D, 4], ``labels`` int64 [D], ``scores`` float64 [D]; ``gt_boxes`` float64
    [G, 4], ``gt_labels`` int64 [G], ``difficult`` bool [G], ``iscrowd`` bool [G].
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    difficult: np.ndarray
    iscrowd: np.ndarray


def check_classes(classes: Sequence[str] | int, caller: str) -> tuple[str, ...]:
    """Class names from names or a count (which names them ``"1"``, ``"2"``, ...)."""
    if isinstance(classes, int):
        classes = [str(k) for k in range(1, classes + 1)]
    names = tuple(str(c) for c in classes)
    if not names:
        raise ValueError(f"{caller}: classes is empty")
    return names


class _Reader:
    def __init__(self, caller: str, what: str, index: int, item: Any) -> None:
        if not isinstance(item, Mapping):
            raise TypeError(f"{caller}: {what}[{index}] must be a dict, got {type(item).__name__}")
        self.caller, self.what, self.index, self.item = caller, what, index, item

    def name(self, key: str) -> str:
        return f"{self.caller}: {self.what}[{self.index}][{key!r}]"

    def array(self, key: str, kind: str) -> np.ndarray:
        if key not in self.item:
            raise ValueError(
                f"{self.caller}: {self.what}[{self.index}] has no {key!r} "
                f"(keys: {sorted(self.item)})"
            )
        value = self.item[key]
        if not isinstance(value, Tensor):
            value = torch.as_tensor(np.asarray(value))
        value = value.detach()
        if kind == "int" and (value.is_floating_point() or value.dtype == torch.bool):
            raise TypeError(f"{self.name(key)} must be integers, got {value.dtype}")
        dtype = {"float": torch.float64, "int": torch.int64, "bool": torch.bool}[kind]
        return value.to("cpu", dtype).numpy()

    def boxes(self) -> np.ndarray:
        boxes = self.array("boxes", "float")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{self.name('boxes')} must have shape [N, 4], got {boxes.shape}")
        return boxes

    def vector(self, key: str, kind: str, n: int) -> np.ndarray:
        value = self.array(key, kind)
        if value.shape != (n,):
            raise ValueError(f"{self.name(key)} must have shape [{n}], got {value.shape}")
        return value

    def labels(self, n: int, num_classes: int) -> np.ndarray:
        labels = self.vector("labels", "int", n)
        if n and (labels.min() < 1 or labels.max() > num_classes):
            raise ValueError(
                f"{self.name('labels')} must lie in 1..{num_classes} (0 is background), got "
                f"values in {labels.min()}..{labels.max()}"
            )
        return labels

    def flag(self, key: str, n: int) -> np.ndarray:
        if key not in self.item:
            return np.zeros(n, dtype=bool)
        return self.vector(key, "bool", n)


def read_inputs(
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    num_classes: int,
    caller: str,
):
    """Yield one :class:`ImageInputs` per image, checking everything on the way.

    Raises:
        ValueError: lengths differ, a key is missing, a shape is wrong, a label is outside
            1..num_classes, or a score is NaN or infinite.
        TypeError: an item is not a dict, or labels are not integers.
    """
    if len(predictions) != len(targets):
        raise ValueError(
            f"{caller}: {len(predictions)} predictions but {len(targets)} targets; give one "
            "of each per image, in the same order"
        )
    for i, (pred, target) in enumerate(zip(predictions, targets, strict=True)):
        t = _Reader(caller, "targets", i, target)
        gt_boxes = t.boxes()
        g = gt_boxes.shape[0]
        p = _Reader(caller, "predictions", i, pred)
        boxes = p.boxes()
        d = boxes.shape[0]
        scores = p.vector("scores", "float", d)
        if not np.isfinite(scores).all():
            raise ValueError(f"{p.name('scores')} has NaN or infinite values")
        yield ImageInputs(
            boxes=boxes,
            labels=p.labels(d, num_classes),
            scores=scores,
            gt_boxes=gt_boxes,
            gt_labels=t.labels(g, num_classes),
            difficult=t.flag("difficult", g),
            iscrowd=t.flag("iscrowd", g),
        )
