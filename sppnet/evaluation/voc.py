"""PASCAL VOC detection average precision, as the official devkit computes it.

Two metrics share one matching step:

- ``"voc07"``: the VOC2007 11-point interpolated AP (the mean over recall thresholds
  0, 0.1, ..., 1 of the highest precision at recall >= the threshold). The SPP-net and R-CNN
  papers report this one.
- ``"voc10"``: the VOC2010+ AP, the exact area under the interpolated ("monotone envelope")
  precision/recall curve.

Matching follows the devkit's ``VOCevaldet.m`` exactly:

- per class, all detections of all images are sorted by descending score (a stable sort, so
  ties keep input order);
- each detection is compared with every ground-truth box of its class in its image, the
  *difficult* ones included, and takes the one with the highest IoU (the first on ties);
- if that IoU is below ``iou_threshold`` the detection is a false positive; otherwise, if the
  box is difficult the detection is ignored (neither true nor false positive), else it is a true
  positive the first time that box is taken and a false positive (a duplicate) afterwards. The
  devkit does not fall back to the next-best free box, and neither does this code;
- recall is divided by the number of non-difficult ground-truth boxes of the class.

A target may also flag boxes ``iscrowd`` (COCO's crowd regions): they are ignored exactly like
difficult ones.

Boxes follow the project's contract: xyxy, 0-based, ``x2``/``y2`` exclusive, so a box's width is
``x2 - x1``. That is the devkit's ``x2 - x1 + 1`` on its 1-based inclusive coordinates, hence the
IoUs, and the APs, are the devkit's to float precision.

A class without a single non-difficult ground-truth box has no defined AP: it is reported as
NaN and left out of the mAP (the devkit would divide by zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from sppnet.evaluation._inputs import check_classes, read_inputs

__all__ = [
    "METRICS",
    "ClassResult",
    "VOCResult",
    "average_precision",
    "evaluate_voc",
]

#: The AP metrics :func:`evaluate_voc` computes, in the order the report lists them.
METRICS: tuple[str, ...] = ("voc07", "voc10")


def average_precision(recall: np.ndarray, precision: np.ndarray, metric: str = "voc10") -> float:
    """AP of one precision/recall curve.

    Args:
        recall: float array [N], non-decreasing, the recall after each ranked detection.
        precision: float array [N], the precision after each ranked detection.
        metric: ``"voc07"`` (11-point interpolation) or ``"voc10"`` (area under the monotone
            envelope of the curve).

    Returns:
        AP in [0, 1]; 0.0 for an empty curve.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(
            "average_precision: recall and precision must be 1-D arrays of one length, got "
            f"shapes {recall.shape} and {precision.shape}"
        )
    if metric == "voc07":
        ap = 0.0
        # Exact tenths: numpy's arange(0, 1.1, 0.1) (py-faster-rcnn's port) has 0.6000000000000001,
        # which wrongly misses a recall of exactly 3/5.
        for t in (k / 10 for k in range(11)):
            above = precision[recall >= t]
            ap += float(above.max()) if above.size else 0.0
        return ap / 11.0
    if metric == "voc10":
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        # The envelope: the precision at recall r becomes the best precision at any recall >= r.
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        changes = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))
    raise ValueError(f"average_precision: metric must be one of {METRICS}, got {metric!r}")


@dataclass(frozen=True)
class ClassResult:
    """The ranked detections of one class and its precision/recall curve.

    Attributes:
        scores: float64 [D], the scores of the class's detections that count (true or false
            positives), in descending order; detections matched to a difficult box are dropped,
            as the devkit ignores them.
        tp: bool [D], whether each counted detection is a true positive.
        recall: float64 [D], recall after each detection (NaN when ``num_positives`` is 0).
        precision: float64 [D], precision after each detection.
        num_positives: number of non-difficult ground-truth boxes of the class.
        num_difficult: number of difficult ground-truth boxes of the class.
        num_ignored: detections matched to a difficult box (neither TP nor FP).
        ap: ``{"voc07": float, "voc10": float}``; NaN for both when ``num_positives`` is 0.
    """

    scores: np.ndarray
    tp: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    num_positives: int
    num_difficult: int
    num_ignored: int
    ap: Mapping[str, float]

    @property
    def num_detections(self) -> int:
        """Detections counted as TP or FP."""
        return int(self.tp.size)

    @property
    def num_tp(self) -> int:
        return int(self.tp.sum())

    @property
    def num_fp(self) -> int:
        return int(self.tp.size - self.tp.sum())


@dataclass(frozen=True)
class VOCResult:
    """VOC evaluation of a detector on a set of images.

    Attributes:
        classes: the class names, ``classes[k - 1]`` for label ``k``.
        per_class: one :class:`ClassResult` per class, in label order.
        iou_threshold: the IoU at or above which a detection can match a box.
        num_images: the number of images evaluated.
    """

    classes: tuple[str, ...]
    per_class: tuple[ClassResult, ...]
    iou_threshold: float
    num_images: int

    def ap(self, metric: str = "voc07") -> dict[str, float]:
        """Per-class AP for ``metric`` (``"voc07"`` or ``"voc10"``), keyed by class name."""
        _check_metric(metric)
        return {name: r.ap[metric] for name, r in zip(self.classes, self.per_class, strict=True)}

    def map(self, metric: str = "voc07") -> float:
        """Mean AP over the classes that have at least one non-difficult box; NaN if none has."""
        values = [v for v in self.ap(metric).values() if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [D, 4] with every box in ``b`` [G, 4] (torchvision's box_iou,
    in float64 numpy); 0 where the union is empty."""
    inter_wh = np.clip(
        np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]),
        0.0,
        None,
    )
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def evaluate_voc(
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    classes: Sequence[str] | int,
    *,
    iou_threshold: float = 0.5,
) -> VOCResult:
    """PASCAL VOC AP (VOC2007 11-point and VOC2010+ area) per class, matched as the devkit does.

    Args:
        predictions: one dict per image (the detector's output format): ``boxes`` Tensor[D, 4]
            xyxy pixels, ``labels`` Tensor[D] int in 1..num_classes, ``scores`` Tensor[D].
        targets: one dict per image, in the same order (the dataset's target format):
            ``boxes`` Tensor[G, 4], ``labels`` Tensor[G], and optionally ``difficult``
            Tensor[G] bool (all False when absent) and ``iscrowd`` Tensor[G] bool (a COCO crowd
            box, ignored like a difficult one).
        classes: the class names without background (``classes[k - 1]`` for label ``k``), or
            the number of classes, which names them ``"1"``, ``"2"``, ...
        iou_threshold: a detection can match a box when their IoU is >= this (0.5 in VOC).

    Returns:
        A :class:`VOCResult`; ``result.map("voc07")`` is the paper's metric.

    Raises:
        ValueError / TypeError: mismatched lengths, missing keys, bad shapes, labels out of range,
            non-finite scores.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"evaluate_voc: iou_threshold must be in (0, 1], got {iou_threshold}")
    classes = check_classes(classes, "evaluate_voc")
    num_classes = len(classes)

    # Per detection, over all images: label, score, and the outcome of the devkit's matching,
    # encoded as the global index of the box it takes (or -1: no box at >= iou_threshold) and
    # whether that box is difficult.
    det_labels, det_scores, det_gt, det_difficult = [], [], [], []
    num_positives = np.zeros(num_classes + 1, dtype=np.int64)
    num_difficult = np.zeros(num_classes + 1, dtype=np.int64)
    gt_offset = 0
    for x in read_inputs(predictions, targets, num_classes, "evaluate_voc"):
        difficult = x.difficult | x.iscrowd
        np.add.at(num_positives, x.gt_labels[~difficult], 1)
        np.add.at(num_difficult, x.gt_labels[difficult], 1)
        d, g = x.boxes.shape[0], x.gt_boxes.shape[0]
        offset, gt_offset = gt_offset, gt_offset + g
        if d == 0:
            continue
        if g:
            iou = _iou(x.boxes, x.gt_boxes)
            # A detection only looks at boxes of its own class.
            iou[x.labels[:, None] != x.gt_labels[None, :]] = -1.0
            best = iou.argmax(axis=1)  # the first maximum on ties, as Matlab's max
            matched = iou[np.arange(d), best] >= iou_threshold
            gt_index = np.where(matched, best + offset, -1)
            hit_difficult = matched & difficult[best]
        else:
            gt_index = np.full(d, -1, dtype=np.int64)
            hit_difficult = np.zeros(d, dtype=bool)
        det_labels.append(x.labels)
        det_scores.append(x.scores)
        det_gt.append(gt_index)
        det_difficult.append(hit_difficult)

    if det_labels:
        all_labels = np.concatenate(det_labels)
        all_scores = np.concatenate(det_scores)
        all_gt = np.concatenate(det_gt)
        all_difficult = np.concatenate(det_difficult)
    else:
        all_labels = np.zeros(0, dtype=np.int64)
        all_scores = np.zeros(0, dtype=np.float64)
        all_gt = np.zeros(0, dtype=np.int64)
        all_difficult = np.zeros(0, dtype=bool)

    per_class = []
    for k in range(1, num_classes + 1):
        in_class = np.flatnonzero(all_labels == k)
        order = in_class[np.argsort(-all_scores[in_class], kind="stable")]
        gt = all_gt[order]
        ignored = all_difficult[order]
        # A detection is a TP when it is the first, in score order, to take its box; the box it
        # takes does not depend on earlier matches, so "first" is all there is to the greedy loop.
        first = np.zeros(order.size, dtype=bool)
        _, first_index = np.unique(gt, return_index=True)
        first[first_index] = True
        tp = (gt >= 0) & ~ignored & first
        keep = ~ignored
        tp = tp[keep]
        scores = all_scores[order][keep]
        npos = int(num_positives[k])
        ctp = np.cumsum(tp, dtype=np.float64)
        precision = ctp / np.arange(1, tp.size + 1, dtype=np.float64)
        if npos > 0:
            recall = ctp / npos
            ap = {m: average_precision(recall, precision, m) for m in METRICS}
        else:
            recall = np.full(tp.size, math.nan)
            ap = dict.fromkeys(METRICS, math.nan)
        per_class.append(
            ClassResult(
                scores=scores,
                tp=tp,
                recall=recall,
                precision=precision,
                num_positives=npos,
                num_difficult=int(num_difficult[k]),
                num_ignored=int(ignored.sum()),
                ap=ap,
            )
        )
    return VOCResult(
        classes=classes,
        per_class=tuple(per_class),
        iou_threshold=float(iou_threshold),
        num_images=len(targets),
    )
