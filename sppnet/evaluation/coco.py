"""COCO-style box AP (AP@[.5:.95], AP50, AP75, ...) through pycocotools, built in memory.

The same inputs as :func:`sppnet.evaluation.voc.evaluate_voc` (per-image prediction and target
dicts) are turned into ``pycocotools.coco.COCO`` objects without a file, and
``pycocotools.cocoeval.COCOeval`` computes the standard twelve numbers.

How the project's targets map onto COCO's annotations:

- boxes xyxy (``x2``/``y2`` exclusive) become COCO ``[x, y, width, height]`` with
  ``width = x2 - x1``; ``area`` (used for the small/medium/large ranges) is the box area,
  as there are no masks;
- image ``i`` of the lists is COCO image id ``i + 1``, label ``k`` is category id ``k``;
  annotation ids start at 1 (``COCOeval`` reads id 0 as "unmatched");
- a ``difficult`` box (or one flagged ``iscrowd`` in the target, if the dict has that key) is
  given ``iscrowd = 1``: that is pycocotools' one way to ignore a box (its own ``ignore`` field is
  overwritten by ``iscrowd``). A detection matched to it is neither TP nor FP, like the VOC devkit,
  but pycocotools measures the overlap with such a box as intersection over the *detection's*
  area, not IoU, and lets any number of detections match it;
- COCO keeps at most the 100 highest-scoring detections per image (``maxDets`` 1, 10, 100).

The numbers therefore differ from the VOC metric by definition even at IoU 0.5: COCO
interpolates precision at 101 recall points and matches each detection to the best *unmatched*
box, where the devkit takes the best box even if already taken.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from sppnet.evaluation._inputs import check_classes, read_inputs

__all__ = ["COCO_METRICS", "COCOResult", "evaluate_coco"]

#: ``COCOeval.stats`` in order, under the names the results JSON uses.
COCO_METRICS: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


@dataclass(frozen=True)
class COCOResult:
    """COCO box metrics.

    Attributes:
        classes: the class names, ``classes[k - 1]`` for label ``k``.
        metrics: ``COCO_METRICS`` name -> value; NaN where COCO has nothing to measure
            (pycocotools' -1, e.g. ``APs`` with no small boxes).
        per_class: class name -> ``{"AP": AP@[.5:.95], "AP50": ..., "AP75": ...}``; NaN for a
            class without a non-ignored box.
    """

    classes: tuple[str, ...]
    metrics: Mapping[str, float]
    per_class: Mapping[str, Mapping[str, float]]


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()


def _build(
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    classes: tuple[str, ...],
):
    from pycocotools.coco import COCO

    images, gt_anns, dt_anns = [], [], []
    for i, x in enumerate(read_inputs(predictions, targets, len(classes), "evaluate_coco")):
        image = {"id": i + 1}
        if "size" in targets[i]:
            h, w = (int(v) for v in targets[i]["size"])
            image.update(height=h, width=w)
        images.append(image)
        crowd = (x.difficult | x.iscrowd).tolist()
        for box, label, is_crowd in zip(
            _xywh(x.gt_boxes), x.gt_labels.tolist(), crowd, strict=True
        ):
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": i + 1,
                    "category_id": label,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(is_crowd),
                }
            )
        for box, label, score in zip(
            _xywh(x.boxes), x.labels.tolist(), x.scores.tolist(), strict=True
        ):
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": i + 1,
                    "category_id": label,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "score": score,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k, "name": name} for k, name in enumerate(classes, start=1)]
    coco_gt, coco_dt = COCO(), COCO()
    coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
    coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
    coco_gt.createIndex()
    coco_dt.createIndex()
    return coco_gt, coco_dt


def _nan_if_missing(values: np.ndarray) -> float:
    values = values[values > -1]
    return float(values.mean()) if values.size else math.nan


def evaluate_coco(
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    classes: Sequence[str] | int,
) -> COCOResult:
    """COCO box AP of per-image detections against per-image targets.

    Args:
        predictions: one dict per image: ``boxes`` Tensor[D, 4] xyxy, ``labels`` Tensor[D] int in
            1..num_classes, ``scores`` Tensor[D].
        targets: one dict per image, same order: ``boxes``, ``labels``, optional ``difficult`` and
            ``iscrowd`` (bool [G]; either makes the box ignored, see the module docstring),
            optional ``size`` (H, W).
        classes: the class names without background, or their number.

    Returns:
        A :class:`COCOResult`. pycocotools' progress printing is silenced.
    """
    from pycocotools.cocoeval import COCOeval

    classes = check_classes(classes, "evaluate_coco")

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = _build(predictions, targets, classes)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    metrics = {
        name: (float(v) if v > -1 else math.nan)
        for name, v in zip(COCO_METRICS, evaluator.stats, strict=True)
    }
    # precision: [T iou thresholds, R=101 recall points, K classes, A area ranges, M max dets];
    # area range 0 is "all", max dets -1 is 100.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    thresholds = evaluator.params.iouThrs
    i50 = int(np.argmin(np.abs(thresholds - 0.5)))
    i75 = int(np.argmin(np.abs(thresholds - 0.75)))
    per_class = {
        name: {
            "AP": _nan_if_missing(precision[:, :, k]),
            "AP50": _nan_if_missing(precision[i50, :, k]),
            "AP75": _nan_if_missing(precision[i75, :, k]),
        }
        for k, name in enumerate(classes)
    }
    return COCOResult(classes=classes, metrics=metrics, per_class=per_class)
