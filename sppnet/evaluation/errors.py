"""Where a detector's errors come from: Hoiem et al.'s false-positive analysis, as R-CNN and SPP-net
used it, plus missed ground truth by object size, a class confusion matrix and precision/recall at
one score threshold.

Reference: D. Hoiem, Y. Chodpathumwan, Q. Dai, "Diagnosing Error in Object Detectors", ECCV 2012.

Every detection is first matched exactly as the VOC devkit does (:mod:`sppnet.evaluation.voc`:
per class, in descending score order, a detection takes its own class's box of highest IoU; it is
a true positive when that IoU is >= ``iou_threshold`` and it is the first to take the box, ignored
when the box is difficult). A false positive then gets the first type that fits, in this order:

- ``duplicate``: IoU >= ``iou_threshold`` with a box of its class that a higher-scoring detection
  already took (a localisation error in Hoiem's analysis);
- ``localization``: ``confusion_iou <= IoU < iou_threshold`` (0.1 by default) with a box of its
  own class;
- ``confusion``: IoU >= ``confusion_iou`` with a box of another class (the class of the box of
  highest IoU is recorded);
- ``background``: everything else.

Boxes are the project's: xyxy pixels, ``x2``/``y2`` exclusive, labels 1..num_classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from sppnet.evaluation._inputs import check_classes, read_inputs
from sppnet.evaluation.voc import _iou

__all__ = [
    "FALSE_POSITIVE_TYPES",
    "KINDS",
    "SIZE_RANGES",
    "ClassErrors",
    "ErrorAnalysis",
    "MatchedDetections",
    "analyze_errors",
    "match_detections",
]

#: The outcome codes of :attr:`MatchedDetections.kind`, ``KINDS[code]`` is its name.
KINDS: tuple[str, ...] = (
    "tp",
    "ignored",
    "duplicate",
    "localization",
    "confusion",
    "background",
)
TP, IGNORED, DUPLICATE, LOCALIZATION, CONFUSION, BACKGROUND = range(len(KINDS))
#: The three types the top-ranked false positives are split into (duplicates count as
#: localisation errors, as in Hoiem et al.; their number is also reported on its own).
FALSE_POSITIVE_TYPES: tuple[str, ...] = ("localization", "confusion", "background")
#: COCO's object sizes by box area in pixels: small < 32², medium < 96², large the rest.
SIZE_RANGES: tuple[tuple[str, float, float], ...] = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, math.inf),
)


@dataclass(frozen=True)
class MatchedDetections:
    """Every detection and ground-truth box of a set of images, matched (all images concatenated,
    in input order).

    Detections: ``image`` int64 [D], ``label`` int64 [D], ``score`` float64 [D], ``box`` float64
    [D, 4], ``kind`` int8 [D] (a code of :data:`KINDS`), ``iou_own`` float64 [D] (the best IoU
    with a box of the detection's class, 0 when there is none), ``confused_with`` int64 [D] (for
    ``confusion`` the label of the other class's box of highest IoU, else 0), ``gt_index`` int64
    [D] (the box a ``tp``, ``ignored`` or ``duplicate`` detection took, else -1).

    Ground truth: ``gt_image``, ``gt_label`` int64 [G], ``gt_box`` float64 [G, 4], ``gt_ignored``
    bool [G] (difficult or crowd), ``gt_area`` float64 [G].
    """

    classes: tuple[str, ...]
    num_images: int
    iou_threshold: float
    confusion_iou: float
    image: np.ndarray
    label: np.ndarray
    score: np.ndarray
    box: np.ndarray
    kind: np.ndarray
    iou_own: np.ndarray
    confused_with: np.ndarray
    gt_index: np.ndarray
    gt_image: np.ndarray
    gt_label: np.ndarray
    gt_box: np.ndarray
    gt_ignored: np.ndarray

    @property
    def gt_area(self) -> np.ndarray:
        return (self.gt_box[:, 2] - self.gt_box[:, 0]) * (self.gt_box[:, 3] - self.gt_box[:, 1])

    def found(self, score_threshold: float | None = None) -> np.ndarray:
        """bool [G]: whether a true positive scoring >= ``score_threshold`` took each box."""
        keep = (self.kind == TP) & _above(self.score, score_threshold)
        found = np.zeros(self.gt_label.size, dtype=bool)
        found[self.gt_index[keep]] = True
        return found


def _above(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    return np.ones(scores.shape, dtype=bool) if threshold is None else scores >= threshold


def _best(iou: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first column of highest IoU among the allowed ones and that IoU (-1: none)."""
    masked = np.where(allowed, iou, -1.0)
    best = masked.argmax(axis=1)
    return best, masked[np.arange(iou.shape[0]), best]


def match_detections(
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    classes: Sequence[str] | int,
    *,
    iou_threshold: float = 0.5,
    confusion_iou: float = 0.1,
) -> MatchedDetections:
    """Match every detection to the ground truth and give each false positive its type.

    Args:
        predictions, targets: one dict per image, as :func:`sppnet.evaluation.evaluate_voc` takes
            them (``difficult`` and ``iscrowd`` boxes are ignored the same way).
        classes: the class names without background, or their number.
        iou_threshold: the IoU at or above which a detection can match a box (0.5 in VOC).
        confusion_iou: the lowest IoU that makes a false positive a localisation error or a
            confusion rather than background (0.1, Hoiem et al.).

    Returns:
        A :class:`MatchedDetections`; its ``tp`` flags per class are exactly those of
        :func:`~sppnet.evaluation.evaluate_voc` on the same input.
    """
    if not 0.0 < confusion_iou < iou_threshold <= 1.0:
        raise ValueError(
            "match_detections: need 0 < confusion_iou < iou_threshold <= 1, got "
            f"confusion_iou={confusion_iou}, iou_threshold={iou_threshold}"
        )
    classes = check_classes(classes, "match_detections")
    det: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "label", "score", "box", "gt")}
    det.update(own=[], other=[], other_label=[], difficult=[])
    gt: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "label", "box", "ignored")}
    offset = 0
    for i, x in enumerate(read_inputs(predictions, targets, len(classes), "match_detections")):
        ignored = x.difficult | x.iscrowd
        d, g = x.boxes.shape[0], x.gt_boxes.shape[0]
        gt["image"].append(np.full(g, i, dtype=np.int64))
        gt["label"].append(x.gt_labels)
        gt["box"].append(x.gt_boxes)
        gt["ignored"].append(ignored)
        if d:
            iou = _iou(x.boxes, x.gt_boxes) if g else np.zeros((d, 0))
            same = x.labels[:, None] == x.gt_labels[None, :]
            if g:
                best, own = _best(iou, same)
                other_best, other = _best(iou, ~same)
                other_label = x.gt_labels[other_best]
            else:
                best = other_best = np.zeros(d, dtype=np.int64)
                own = other = np.full(d, -1.0)
                other_label = np.zeros(d, dtype=np.int64)
            matched = own >= iou_threshold
            det["image"].append(np.full(d, i, dtype=np.int64))
            det["label"].append(x.labels)
            det["score"].append(x.scores)
            det["box"].append(x.boxes)
            det["gt"].append(np.where(matched, best + offset, -1))
            det["difficult"].append(matched & ignored[best] if g else np.zeros(d, dtype=bool))
            det["own"].append(np.maximum(own, 0.0))
            det["other"].append(np.maximum(other, 0.0))
            det["other_label"].append(np.where(other >= 0, other_label, 0))
        offset += g

    def cat(parts: list[np.ndarray], dtype: Any, shape: tuple[int, ...] = (0,)) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype=dtype)

    label = cat(det["label"], np.int64)
    score = cat(det["score"], np.float64)
    gt_index = cat(det["gt"], np.int64)
    difficult = cat(det["difficult"], bool)
    own = cat(det["own"], np.float64)
    other = cat(det["other"], np.float64)
    other_label = cat(det["other_label"], np.int64)

    kind = np.full(label.size, BACKGROUND, dtype=np.int8)
    for k in range(1, len(classes) + 1):
        in_class = np.flatnonzero(label == k)
        order = in_class[np.argsort(-score[in_class], kind="stable")]
        # The devkit's greedy loop is "the first in rank order to take a box wins" (voc.py).
        first = np.zeros(order.size, dtype=bool)
        first[np.unique(gt_index[order], return_index=True)[1]] = True
        taken = gt_index[order] >= 0
        kind[order[taken & first]] = TP
        kind[order[taken & ~first]] = DUPLICATE
        kind[order[taken & difficult[order]]] = IGNORED
    fp = (kind == BACKGROUND) & (gt_index < 0)
    kind[fp & (own >= confusion_iou)] = LOCALIZATION
    kind[fp & (own < confusion_iou) & (other >= confusion_iou)] = CONFUSION
    confused_with = np.where(kind == CONFUSION, other_label, 0)
    gt_index = np.where(np.isin(kind, (TP, IGNORED, DUPLICATE)), gt_index, -1)
    return MatchedDetections(
        classes=classes,
        num_images=len(targets),
        iou_threshold=float(iou_threshold),
        confusion_iou=float(confusion_iou),
        image=cat(det["image"], np.int64),
        label=label,
        score=score,
        box=cat(det["box"], np.float64, (0, 4)),
        kind=kind,
        iou_own=own,
        confused_with=confused_with,
        gt_index=gt_index,
        gt_image=cat(gt["image"], np.int64),
        gt_label=cat(gt["label"], np.int64),
        gt_box=cat(gt["box"], np.float64, (0, 4)),
        gt_ignored=cat(gt["ignored"], bool),
    )


@dataclass(frozen=True)
class ClassErrors:
    """The error analysis of one class.

    Attributes:
        num_positives: non-difficult ground-truth boxes.
        top_false_positives: how many of the class's highest-scoring false positives were split
            (``min(max_false_positives or num_positives, number of false positives)``).
        false_positive_types: ``{"localization", "confusion", "background"}`` -> count among them.
        duplicates: how many of the ``localization`` ones are duplicates.
        confused_with: ``{class name: count}`` of the ``confusion`` ones, by the other box's class.
        top_kinds: the type of each of the top false positives in rank order (the cumulative
            shares of Hoiem et al.'s plots).
        tp, fp: true and false positives scoring >= the threshold.
        precision, recall: at the threshold (NaN when undefined).
        missed_by_size: ``{size: {"num_gt", "missed"}}`` over :data:`SIZE_RANGES`, non-difficult
            boxes, missed = no true positive scoring >= the threshold took it.
    """

    num_positives: int
    top_false_positives: int
    false_positive_types: Mapping[str, int]
    duplicates: int
    confused_with: Mapping[str, int]
    top_kinds: tuple[str, ...]
    tp: int
    fp: int
    precision: float
    recall: float
    missed_by_size: Mapping[str, Mapping[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_positives": self.num_positives,
            "top_false_positives": self.top_false_positives,
            "false_positive_types": dict(self.false_positive_types),
            "duplicates": self.duplicates,
            "confused_with": dict(self.confused_with),
            "top_kinds": list(self.top_kinds),
            "tp": self.tp,
            "fp": self.fp,
            "precision": _num(self.precision),
            "recall": _num(self.recall),
            "missed_by_size": {k: dict(v) for k, v in self.missed_by_size.items()},
        }


@dataclass(frozen=True)
class ErrorAnalysis:
    """:func:`analyze_errors`'s result.

    Attributes:
        classes: class names (label ``k`` is ``classes[k - 1]``).
        score_threshold: the threshold of the precision/recall, missed boxes and confusion
            matrix (None: every detection counts).
        per_class: one :class:`ClassErrors` per class, in label order.
        confusion: int64 [K + 1, K + 1]: row = the class of the box a detection scoring >= the
            threshold lies on (its own class for true positives, duplicates and localisation
            errors, the other box's class for confusions, row K for background), column = the
            detected class (columns 0..K-1); column K counts the row class's missed boxes.
        missed_by_size: the sum of the classes' ``missed_by_size``.
        image_missed, image_false_positives, image_true_positives: int64 [N] per image, at the
            threshold (false positives of every type, ignored detections left out).
    """

    classes: tuple[str, ...]
    score_threshold: float | None
    per_class: tuple[ClassErrors, ...]
    confusion: np.ndarray
    missed_by_size: Mapping[str, Mapping[str, int]]
    image_missed: np.ndarray
    image_false_positives: np.ndarray
    image_true_positives: np.ndarray

    def false_positive_totals(self) -> dict[str, int]:
        """The types of the top false positives summed over the classes."""
        return {
            t: sum(c.false_positive_types[t] for c in self.per_class) for t in FALSE_POSITIVE_TYPES
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None)."""
        labels = [*self.classes, "background"]
        return {
            "score_threshold": self.score_threshold,
            "per_class": {
                n: c.to_dict() for n, c in zip(self.classes, self.per_class, strict=True)
            },
            "false_positive_totals": self.false_positive_totals(),
            "confusion": {
                "rows": labels,
                "columns": [*self.classes, "missed"],
                "counts": self.confusion.tolist(),
            },
            "missed_by_size": {k: dict(v) for k, v in self.missed_by_size.items()},
            "per_image": {
                "missed": self.image_missed.tolist(),
                "false_positives": self.image_false_positives.tolist(),
                "true_positives": self.image_true_positives.tolist(),
            },
        }


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _missed_by_size(area: np.ndarray, missed: np.ndarray) -> dict[str, dict[str, int]]:
    out = {}
    for name, low, high in SIZE_RANGES:
        in_range = (area >= low) & (area < high)
        out[name] = {"num_gt": int(in_range.sum()), "missed": int((in_range & missed).sum())}
    return out


def analyze_errors(
    matched: MatchedDetections,
    score_threshold: float | None = None,
    max_false_positives: int | None = None,
) -> ErrorAnalysis:
    """Split each class's top-ranked false positives by type; missed boxes by size; the
    confusion matrix; precision and recall at ``score_threshold``.

    Args:
        matched: from :func:`match_detections`.
        score_threshold: detections scoring >= this count for precision, recall, missed boxes,
            the confusion matrix and the per-image counts; None: all of them. The false-positive
            split does not depend on it: it always takes the highest-ranked ones.
        max_false_positives: how many of each class's highest-scoring false positives to split;
            default: as many as the class has non-difficult boxes (Hoiem et al.'s choice: a
            perfect detector would have that many detections).

    Returns:
        An :class:`ErrorAnalysis`.
    """
    if max_false_positives is not None and max_false_positives < 1:
        raise ValueError(
            f"analyze_errors: max_false_positives must be >= 1, got {max_false_positives}"
        )
    m = matched
    num_classes = len(m.classes)
    above = _above(m.score, score_threshold)
    found = m.found(score_threshold)
    positive = ~m.gt_ignored
    missed = positive & ~found
    area = m.gt_area
    is_fp = np.isin(m.kind, (DUPLICATE, LOCALIZATION, CONFUSION, BACKGROUND))

    confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    counted = above & (m.kind != IGNORED)
    rows = np.where(m.kind == CONFUSION, m.confused_with, m.label) - 1
    rows = np.where(m.kind == BACKGROUND, num_classes, rows)
    np.add.at(confusion, (rows[counted], m.label[counted] - 1), 1)
    np.add.at(confusion[:, num_classes], m.gt_label[missed] - 1, 1)

    per_class = []
    for k in range(1, num_classes + 1):
        in_class = m.label == k
        fp_index = np.flatnonzero(in_class & is_fp)
        fp_index = fp_index[np.argsort(-m.score[fp_index], kind="stable")]
        npos = int((positive & (m.gt_label == k)).sum())
        limit = max_false_positives if max_false_positives is not None else npos
        top = fp_index[:limit]
        kinds = m.kind[top]
        types = {
            "localization": int(np.isin(kinds, (LOCALIZATION, DUPLICATE)).sum()),
            "confusion": int((kinds == CONFUSION).sum()),
            "background": int((kinds == BACKGROUND).sum()),
        }
        others = m.confused_with[top][kinds == CONFUSION]
        other_labels, other_counts = np.unique(others, return_counts=True)
        confused_with = {
            m.classes[int(c) - 1]: int(n) for c, n in zip(other_labels, other_counts, strict=True)
        }
        tp = int((in_class & above & (m.kind == TP)).sum())
        fp = int((in_class & above & is_fp).sum())
        class_gt = positive & (m.gt_label == k)
        per_class.append(
            ClassErrors(
                num_positives=npos,
                top_false_positives=int(top.size),
                false_positive_types=types,
                duplicates=int((kinds == DUPLICATE).sum()),
                confused_with=dict(sorted(confused_with.items(), key=lambda kv: -kv[1])),
                top_kinds=tuple("localization" if c == DUPLICATE else KINDS[int(c)] for c in kinds),
                tp=tp,
                fp=fp,
                precision=tp / (tp + fp) if tp + fp else math.nan,
                recall=tp / npos if npos else math.nan,
                missed_by_size=_missed_by_size(area[class_gt], missed[class_gt]),
            )
        )

    n = m.num_images
    return ErrorAnalysis(
        classes=m.classes,
        score_threshold=None if score_threshold is None else float(score_threshold),
        per_class=tuple(per_class),
        confusion=confusion,
        missed_by_size=_missed_by_size(area[positive], missed[positive]),
        image_missed=np.bincount(m.gt_image[missed], minlength=n).astype(np.int64),
        image_false_positives=np.bincount(m.image[above & is_fp], minlength=n).astype(np.int64),
        image_true_positives=np.bincount(m.image[above & (m.kind == TP)], minlength=n).astype(
            np.int64
        ),
    )
