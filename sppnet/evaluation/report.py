"""Evaluation results as JSON (stable keys, documented in docs/evaluation.md) and as a table.

The JSON document, ``FORMAT_VERSION`` 1::

    {
      "format": "sppnet-eval",
      "version": 1,
      "num_images": 4952,
      "iou_threshold": 0.5,
      "classes": ["aeroplane", ...],
      "voc07": {"mAP": 0.593, "AP": {"aeroplane": 0.68, ...}},
      "voc10": {"mAP": 0.601, "AP": {...}},
      "counts": {"aeroplane": {"num_gt": 285, "num_difficult": 26, "num_detections": 5123,
                               "num_tp": 270, "num_fp": 4853, "num_ignored": 12}, ...},
      "coco": {"AP": 0.31, "AP50": ..., "AP75": ..., "APs": ..., "APm": ..., "APl": ...,
               "AR1": ..., "AR10": ..., "AR100": ..., "ARs": ..., "ARm": ..., "ARl": ...,
               "per_class": {"aeroplane": {"AP": ..., "AP50": ..., "AP75": ...}, ...}},
      "extra": {...}
    }

All APs are fractions in [0, 1]. A value that is undefined (a class without a non-difficult box)
is ``null``. ``coco`` is ``null`` when COCO metrics were not computed; ``extra`` holds whatever the
caller adds (model, scales, timings) and is ``{}`` by default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from sppnet.evaluation.coco import COCO_METRICS, COCOResult
from sppnet.evaluation.voc import METRICS, VOCResult
from sppnet.utils.atomic import atomic_write_json

__all__ = ["FORMAT", "FORMAT_VERSION", "format_table", "results_to_dict", "write_results_json"]

FORMAT = "sppnet-eval"
FORMAT_VERSION = 1


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def results_to_dict(
    voc: VOCResult, coco: COCOResult | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The results document described in the module docstring, as plain JSON-able values."""
    if coco is not None and tuple(coco.classes) != tuple(voc.classes):
        raise ValueError(
            f"results_to_dict: the VOC and COCO results name different classes: {voc.classes} "
            f"vs {coco.classes}"
        )
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "num_images": voc.num_images,
        "iou_threshold": voc.iou_threshold,
        "classes": list(voc.classes),
    }
    for metric in METRICS:
        doc[metric] = {
            "mAP": _num(voc.map(metric)),
            "AP": {name: _num(v) for name, v in voc.ap(metric).items()},
        }
    doc["counts"] = {
        name: {
            "num_gt": r.num_positives,
            "num_difficult": r.num_difficult,
            "num_detections": r.num_detections + r.num_ignored,
            "num_tp": r.num_tp,
            "num_fp": r.num_fp,
            "num_ignored": r.num_ignored,
        }
        for name, r in zip(voc.classes, voc.per_class, strict=True)
    }
    if coco is None:
        doc["coco"] = None
    else:
        doc["coco"] = {name: _num(coco.metrics[name]) for name in COCO_METRICS}
        doc["coco"]["per_class"] = {
            name: {key: _num(v) for key, v in values.items()}
            for name, values in coco.per_class.items()
        }
    doc["extra"] = dict(extra or {})
    return doc


def write_results_json(
    path: str | os.PathLike[str],
    voc: VOCResult,
    coco: COCOResult | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write :func:`results_to_dict` to ``path`` atomically; returns the document."""
    doc = results_to_dict(voc, coco, extra)
    atomic_write_json(path, doc, indent=2)
    return doc


def format_table(voc: VOCResult, coco: COCOResult | None = None) -> str:
    """A plain-text table: one row per class (AP VOC07, AP VOC10, COCO AP, counts) and the means."""

    def cell(value: float) -> str:
        return "   n/a" if math.isnan(value) else f"{value:6.3f}"

    width = max(8, *(len(name) for name in voc.classes))
    header = f"{'class':<{width}}  voc07   voc10"
    if coco is not None:
        header += "  coco AP   AP50"
    header += "     gt   dets"
    lines = [header, "-" * len(header)]
    ap07, ap10 = voc.ap("voc07"), voc.ap("voc10")
    for name, r in zip(voc.classes, voc.per_class, strict=True):
        row = f"{name:<{width}} {cell(ap07[name])}  {cell(ap10[name])}"
        if coco is not None:
            row += f"   {cell(coco.per_class[name]['AP'])} {cell(coco.per_class[name]['AP50'])}"
        row += f" {r.num_positives:6d} {r.num_detections + r.num_ignored:6d}"
        lines.append(row)
    lines.append("-" * len(header))
    row = f"{'mean':<{width}} {cell(voc.map('voc07'))}  {cell(voc.map('voc10'))}"
    if coco is not None:
        row += f"   {cell(coco.metrics['AP'])} {cell(coco.metrics['AP50'])}"
    lines.append(row)
    return "\n".join(lines)
