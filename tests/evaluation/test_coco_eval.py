"""COCO AP: the in-memory path against pycocotools run from files, and against the VOC metric."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from synthetic_detections import FAR, A, B, make_pred, make_target, random_dataset

from sppnet.evaluation import COCO_METRICS, evaluate_coco, evaluate_voc


def _pycocotools_from_files(preds, targets, num_classes, tmp_path):
    """The usual pycocotools workflow: a ground-truth JSON file and loadRes on a result list."""
    images = [{"id": i + 1, "width": 600, "height": 600} for i in range(len(targets))]
    anns = []
    for i, t in enumerate(targets):
        diff = t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool))
        for box, label, d in zip(
            t["boxes"].tolist(), t["labels"].tolist(), diff.tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(d),
                }
            )
    cats = [{"id": k, "name": str(k)} for k in range(1, num_classes + 1)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    results = []
    for i, p in enumerate(preds):
        for box, label, s in zip(
            p["boxes"].tolist(), p["labels"].tolist(), p["scores"].tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": s,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", range(4))
def test_matches_pycocotools_run_from_files(seed, tmp_path):
    preds, targets = random_dataset(seed, num_images=10)
    result = evaluate_coco(preds, targets, 3)
    stats = _pycocotools_from_files(preds, targets, 3, tmp_path)
    for name, value in zip(COCO_METRICS, stats, strict=True):
        if value == -1:
            assert math.isnan(result.metrics[name]), name
        else:
            assert result.metrics[name] == pytest.approx(float(value), abs=1e-12), name
    # The per-class APs average to the overall AP (all classes have boxes here).
    per_class = [v["AP"] for v in result.per_class.values() if not math.isnan(v["AP"])]
    assert np.mean(per_class) == pytest.approx(result.metrics["AP"], abs=1e-12)


def test_perfect_and_empty():
    targets = [make_target([A, B], [1, 2]), make_target([B], [1])]
    perfect = [make_pred([A, B], [1, 2], [0.3, 0.9]), make_pred([B], [1], [0.8])]
    r = evaluate_coco(perfect, targets, ["cat", "dog"])
    assert r.metrics["AP"] == pytest.approx(1.0)
    assert r.metrics["AP50"] == pytest.approx(1.0)
    assert r.per_class["dog"]["AP75"] == pytest.approx(1.0)
    assert math.isnan(r.metrics["APl"])  # no box has area > 96^2
    # No detections at all: pycocotools' loadRes cannot take that; the in-memory path can.
    empty = [make_pred([], [], []), make_pred([], [], [])]
    assert evaluate_coco(empty, targets, 2).metrics["AP"] == 0.0


def test_difficult_is_ignored_as_crowd():
    # A detection on the difficult box B counts for nothing; the FP above the TP halves AP50
    # (101-point interpolation: precision 1/2 at every recall point).
    targets = [make_target([A, B], [1, 1], [False, True])]
    preds = [make_pred([B, FAR, A], [1, 1, 1], [0.9, 0.85, 0.8])]
    assert evaluate_coco(preds, targets, 1).metrics["AP50"] == pytest.approx(0.5)
    # Without the FP the ignored detection leaves AP50 at 1.
    preds = [make_pred([B, A], [1, 1], [0.9, 0.8])]
    assert evaluate_coco(preds, targets, 1).metrics["AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_voc_area_ap_agrees_with_coco_ap50(seed):
    # Same data, two definitions (all-point area vs 101-point interpolation; devkit vs COCO
    # matching): close, not equal. No difficult boxes, at most 100 detections per image.
    preds, targets = random_dataset(seed, num_images=30, difficult_rate=0.0, max_dets=60)
    voc = evaluate_voc(preds, targets, 3)
    coco = evaluate_coco(preds, targets, 3)
    assert voc.map("voc10") == pytest.approx(coco.metrics["AP50"], abs=0.01)
    for name in voc.classes:
        assert voc.ap("voc10")[name] == pytest.approx(coco.per_class[name]["AP50"], abs=0.015)


def test_bad_input():
    with pytest.raises(ValueError, match="predictions but"):
        evaluate_coco([], [make_target([A], [1])], 1)
    with pytest.raises(ValueError, match=r"1\.\.1"):
        evaluate_coco([make_pred([A], [2], [1.0])], [make_target([A], [1])], 1)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_coco([make_pred([A], [1], [math.inf])], [make_target([A], [1])], 1)
