"""Annotated copies of a detection set's images, as PNG files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sppnet.engine.detection.data import DetectionSet
from sppnet.utils.atomic import atomic_write_bytes
from sppnet.utils.draw import draw_detections

__all__ = ["draw_predictions", "draw_threshold"]


def draw_threshold(scoring: str) -> float:
    """The score above which detections are shown to a person: 0.5 for probabilities (softmax
    and the fused heads), 0 for SVM margins."""
    return 0.0 if scoring == "svm" else 0.5


def draw_predictions(
    data: DetectionSet,
    preds: Sequence[dict[str, Any]],
    classes: Sequence[str],
    out: Path,
    min_score: float,
    limit: int | None = None,
) -> list[Path]:
    """Write ``out/<image_id>.png``: each image with its detections scoring above ``min_score``
    (at most ``limit`` images, in dataset order). Returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    count = len(preds) if limit is None else min(limit, len(preds))
    for i in range(count):
        keep = preds[i]["scores"] > min_score
        image = draw_detections(
            data.image(i),
            preds[i]["boxes"][keep],
            preds[i]["labels"][keep],
            preds[i]["scores"][keep],
            classes,
        )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = out / f"{data.targets[i]['image_id']}.png"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written
