"""The detector's post-processing in numpy, for the ONNX graph's outputs.

The same steps as :class:`sppnet.models.detector.DetectionPostprocess`, in the same order: clip
every per-class box to the image, keep ``score > score_threshold`` and boxes at least
``min_box_size`` wide and high, greedy NMS per class (a box goes when its IoU with a better kept
box of its class is ``> nms_threshold``), the ``detections_per_image`` best over all classes, then
optional box voting (the score-weighted mean, weights ``max(score, 0)``, of the candidates of the
kept box's class overlapping it by IoU ``>= box_voting_iou``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["nms_per_class", "postprocess_detections"]


def _iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with boxes [N, 4] (0 where the union is empty)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (
        (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    )
    union = union - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms_per_class(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Greedy NMS within each label: int64 indices of the kept boxes, by decreasing score."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    for label in np.unique(labels):
        candidates = order[labels[order] == label]
        while candidates.size:
            best = candidates[0]
            keep.append(best)
            rest = candidates[1:]
            candidates = rest[_iou_one(boxes[best], boxes[rest]) <= iou_threshold]
    keep_array = np.asarray(keep, dtype=np.int64)
    return keep_array[np.argsort(-scores[keep_array], kind="stable")]


def postprocess_detections(
    scores: np.ndarray,
    boxes: np.ndarray,
    image_size: tuple[int, int],
    *,
    score_threshold: float,
    nms_threshold: float = 0.3,
    detections_per_image: int = 100,
    min_box_size: float = 1.0,
    box_voting_iou: float | None = None,
) -> dict[str, np.ndarray]:
    """One image's windows to detections.

    Args:
        scores: float32 [K, C] per-window class scores (the graph's ``scores``).
        boxes: float32 [K, C, 4] per-class boxes, original pixels (the graph's ``boxes``).
        image_size: ``(height, width)`` of the original image.
        score_threshold, nms_threshold, detections_per_image, min_box_size, box_voting_iou: as
            :class:`~sppnet.models.detector.DetectionPostprocess` (stored in the ONNX file).

    Returns:
        ``{"boxes": float32 [D, 4], "labels": int64 [D] in 1..C, "scores": float32 [D]}`` by
        decreasing score.
    """
    if scores.ndim != 2 or boxes.shape != (*scores.shape, 4):
        raise ValueError(
            f"postprocess_detections: expected scores [K, C] and boxes [K, C, 4], got "
            f"{scores.shape} and {boxes.shape}"
        )
    height, width = image_size
    num_classes = scores.shape[1]
    flat = boxes.reshape(-1, 4).astype(np.float32, copy=True)
    flat[:, 0::2] = np.clip(flat[:, 0::2], 0, width)
    flat[:, 1::2] = np.clip(flat[:, 1::2], 0, height)
    flat_scores = scores.reshape(-1)
    flat_labels = np.tile(np.arange(1, num_classes + 1, dtype=np.int64), scores.shape[0])
    w, h = flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]
    ok = (flat_scores > score_threshold) & (w >= min_box_size) & (h >= min_box_size)
    flat, flat_scores, flat_labels = flat[ok], flat_scores[ok], flat_labels[ok]
    keep = nms_per_class(flat, flat_scores, flat_labels, nms_threshold)[:detections_per_image]
    kept = flat[keep]
    if box_voting_iou is not None and keep.size:
        weights = np.clip(flat_scores, 0, None)
        for i, j in enumerate(keep):
            votes = (_iou_one(flat[j], flat) >= box_voting_iou) & (flat_labels == flat_labels[j])
            total = weights[votes].sum()
            if total > 0:
                kept[i] = (weights[votes, None] * flat[votes]).sum(axis=0) / total
    return {
        "boxes": kept.astype(np.float32),
        "labels": flat_labels[keep],
        "scores": flat_scores[keep].astype(np.float32),
    }
