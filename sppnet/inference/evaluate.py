"""Detect on a whole :class:`~sppnet.engine.detection.DetectionSet` and score the detections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sppnet.engine.detection.data import DetectionSet
from sppnet.evaluation import evaluate_coco, evaluate_voc
from sppnet.inference.predict import predict
from sppnet.models.detector import SPPNetDetector

__all__ = ["evaluate"]


def evaluate(
    detector: SPPNetDetector,
    data: DetectionSet,
    classes: Sequence[str],
    *,
    coco: bool = True,
    progress: bool = True,
    amp: str = "off",
) -> tuple[Any, Any, list[dict[str, Any]], dict[str, float]]:
    """Detect on every image of ``data`` and score it (VOC07/VOC10 AP, and COCO AP with ``coco``);
    ``amp`` as :func:`~sppnet.inference.predict`.

    Returns:
        ``(voc_result, coco_result_or_None, predictions, seconds)`` where ``seconds`` holds
        ``conv``, ``pool_fc_nms`` (totals) and ``per_image``.
    """
    preds, times = predict(detector, data, progress=progress, amp=amp)
    voc = evaluate_voc(preds, data.targets, classes)
    coco_result = evaluate_coco(preds, data.targets, classes) if coco else None
    n = max(1, len(data))
    seconds = {
        "conv": times["conv"],
        "pool_fc_nms": times["pool_fc_nms"],
        "per_image": (times["conv"] + times["pool_fc_nms"]) / n,
    }
    return voc, coco_result, preds, seconds
