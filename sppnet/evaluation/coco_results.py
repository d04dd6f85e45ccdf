"""COCO detection results files: the standard list that pycocotools' ``COCO.loadRes`` and every
COCO tool read, written from and read back into the project's per-image predictions.

A results file is a JSON list with one entry per detection::

    [{"image_id": 42, "category_id": 18, "bbox": [x, y, width, height], "score": 0.93}, ...]

- ``image_id`` is the dataset's own id of the image (``dataset.result_image_ids``: the integer
  ids of a COCO file; the image ids, strings, of YOLO and VOC folders);
- ``category_id`` the dataset's own class id (``dataset.category_ids``: label ``k`` is
  ``category_ids[k - 1]``; COCO's category ids, YOLO's 0-based class indices, VOC's 1..K);
- ``bbox`` the box ``[x1, y1, x2 - x1, y2 - y1]`` in the image's pixels (COCO's continuous
  coordinates are the project's: no 1-pixel shift), ``score`` the detection's score.

Numbers are written at full precision (float32 values as their exact float64), so a file read
back gives the same boxes and scores to the bit, and the same AP.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sppnet.evaluation._inputs import _Reader

__all__ = [
    "ResultsFileError",
    "predictions_to_coco_results",
    "read_coco_results",
    "write_coco_results",
]


class ResultsFileError(ValueError):
    """A results file is not a valid COCO results list for the dataset; the message names the
    file and the entry."""


def predictions_to_coco_results(
    predictions: Sequence[Mapping[str, Tensor]],
    image_ids: Sequence[int | str],
    category_ids: Sequence[int],
) -> list[dict[str, Any]]:
    """The COCO results list of per-image predictions.

    Args:
        predictions: one dict per image, in the order of ``image_ids``: ``boxes`` Tensor[D, 4]
            xyxy pixels, ``labels`` Tensor[D] int in 1..K, ``scores`` Tensor[D].
        image_ids: the dataset's ids of the images (``dataset.result_image_ids``).
        category_ids: the dataset's class ids, ``category_ids[k - 1]`` for label ``k``.

    Raises:
        ValueError: lengths differ, a shape is wrong, a label is outside 1..K, a score is not
            finite. TypeError: labels are not integers.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(
            f"predictions_to_coco_results: {len(predictions)} predictions for {len(image_ids)} "
            "images; give one per image, in the dataset's order"
        )
    categories = [int(c) for c in category_ids]
    results = []
    for index, (prediction, image_id) in enumerate(zip(predictions, image_ids, strict=True)):
        reader = _Reader("predictions_to_coco_results", "predictions", index, prediction)
        boxes = reader.boxes()
        labels = reader.labels(boxes.shape[0], len(categories))
        scores = reader.vector("scores", "float", boxes.shape[0])
        if not all(math.isfinite(s) for s in scores.tolist()):
            raise ValueError(f"{reader.name('scores')} has NaN or infinite values")
        for (x1, y1, x2, y2), label, score in zip(
            boxes.tolist(), labels.tolist(), scores.tolist(), strict=True
        ):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": categories[label - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return results


def write_coco_results(
    path: str | os.PathLike[str],
    predictions: Sequence[Mapping[str, Tensor]],
    image_ids: Sequence[int | str],
    category_ids: Sequence[int],
) -> int:
    """Write :func:`predictions_to_coco_results` to ``path`` (atomically); returns the number of
    detections written."""
    from sppnet.utils.atomic import atomic_write_json

    results = predictions_to_coco_results(predictions, image_ids, category_ids)
    atomic_write_json(path, results, indent=None)
    return len(results)


def read_coco_results(
    path: str | os.PathLike[str],
    image_ids: Sequence[int | str],
    category_ids: Sequence[int],
) -> list[dict[str, Tensor]]:
    """Read a COCO results file back into per-image predictions for a dataset.

    Args:
        path: the results JSON (a list of detections, see the module docstring).
        image_ids: the dataset's ids of its images, in dataset order. An entry's ``image_id``
            matches an id when both print the same (``42`` and ``"42"`` are one image).
        category_ids: the dataset's class ids; ``category_ids[k - 1]`` becomes label ``k``.

    Returns:
        One dict per image of ``image_ids``, in that order: ``boxes`` Tensor[D, 4] float32 xyxy,
        ``labels`` Tensor[D] int64, ``scores`` Tensor[D] float32, the detections in file order
        (images without any get empty tensors).

    Raises:
        FileNotFoundError: no such file.
        ResultsFileError: not JSON or not a list, or an entry that is not an object, lacks a
            key, has a wrong type, a negative box size, a non-finite number, or an
            ``image_id`` / ``category_id`` the dataset does not have; the message names the file
            and the entry's index.
    """
    where = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: results file not found")
    try:
        with open(path, "rb") as f:
            entries = json.load(f, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise ResultsFileError(f"{where}: not a valid JSON file ({exc})") from None
    if not isinstance(entries, list):
        raise ResultsFileError(
            f"{where}: a COCO results file is a list of detections, got {type(entries).__name__}"
        )
    index_of = {str(image_id): i for i, image_id in enumerate(image_ids)}
    label_of = {int(c): k for k, c in enumerate(category_ids, start=1)}
    boxes: list[list[list[float]]] = [[] for _ in image_ids]
    labels: list[list[int]] = [[] for _ in image_ids]
    scores: list[list[float]] = [[] for _ in image_ids]
    for number, entry in enumerate(entries):
        at = f"{where}, entry {number}"
        if not isinstance(entry, Mapping):
            raise ResultsFileError(f"{at}: expected an object, got {type(entry).__name__}")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in entry]
        if missing:
            raise ResultsFileError(f"{at}: no {', '.join(repr(k) for k in missing)}")
        image_id, category, bbox, score = (
            entry["image_id"],
            entry["category_id"],
            entry["bbox"],
            entry["score"],
        )
        if isinstance(image_id, bool) or not isinstance(image_id, int | str):
            raise ResultsFileError(f"{at}: image_id must be an integer or a string: {image_id!r}")
        if str(image_id) not in index_of:
            shown = ", ".join(str(i) for i in list(image_ids)[:3])
            raise ResultsFileError(
                f"{at}: image_id {image_id!r} is not an image of the dataset "
                f"({len(image_ids)} images, ids like {shown})"
            )
        if not _is_int(category) or category not in label_of:
            raise ResultsFileError(
                f"{at}: category_id {category!r} is not a category of the dataset "
                f"{sorted(label_of)}"
            )
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise ResultsFileError(f"{at}: bbox must be a list of 4 finite numbers, got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise ResultsFileError(f"{at}: bbox {bbox} has a negative width or height")
        if not _is_number(score):
            raise ResultsFileError(f"{at}: score must be a finite number, got {score!r}")
        i = index_of[str(image_id)]
        boxes[i].append([x, y, x + w, y + h])
        labels[i].append(label_of[category])
        scores[i].append(float(score))
    return [
        {
            "boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(lab, dtype=torch.int64).reshape(-1),
            "scores": torch.tensor(s, dtype=torch.float32).reshape(-1),
        }
        for b, lab, s in zip(boxes, labels, scores, strict=True)
    ]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the literal {name} is not allowed")
