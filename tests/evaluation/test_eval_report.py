"""Results JSON, table and PR-curve PNG."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from synthetic_detections import FAR, A, B, make_pred, make_target, random_dataset

from sppnet.evaluation import (
    evaluate_coco,
    evaluate_voc,
    format_table,
    results_to_dict,
    save_pr_curves,
    write_results_json,
)

CLASSES = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def results():
    # cat: FP above TP -> AP 0.5; dog: perfect; bird: no box -> undefined.
    targets = [make_target([A, B], [1, 2], [False, False])]
    preds = [make_pred([FAR, A, B], [1, 1, 2], [0.9, 0.5, 0.8])]
    return evaluate_voc(preds, targets, CLASSES), evaluate_coco(preds, targets, CLASSES)


def test_json_keys_and_values(results, tmp_path):
    voc, coco = results
    path = tmp_path / "results.json"
    doc = write_results_json(path, voc, coco, extra={"model": "test"})
    loaded = json.loads(path.read_text())
    assert loaded == doc
    assert list(loaded) == [
        "format",
        "version",
        "num_images",
        "iou_threshold",
        "classes",
        "voc07",
        "voc10",
        "counts",
        "coco",
        "extra",
    ]
    assert loaded["format"] == "sppnet-eval" and loaded["version"] == 1
    assert loaded["classes"] == CLASSES and loaded["num_images"] == 1
    assert loaded["voc07"]["AP"] == {"cat": 0.5, "dog": 1.0, "bird": None}
    assert loaded["voc10"]["mAP"] == pytest.approx(0.75)
    assert loaded["counts"]["cat"] == {
        "num_gt": 1,
        "num_difficult": 0,
        "num_detections": 2,
        "num_tp": 1,
        "num_fp": 1,
        "num_ignored": 0,
    }
    assert loaded["coco"]["per_class"]["dog"]["AP50"] == pytest.approx(1.0)
    assert loaded["coco"]["per_class"]["bird"]["AP"] is None
    assert set(loaded["coco"]) >= {"AP", "AP50", "AP75", "AR100"}
    assert loaded["extra"] == {"model": "test"}
    assert results_to_dict(voc)["coco"] is None


def test_table(results):
    voc, coco = results
    table = format_table(voc, coco)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "voc07", "voc10", "coco", "AP", "AP50", "gt", "dets"]
    assert lines[2].split()[:3] == ["cat", "0.500", "0.500"]
    assert "n/a" in lines[4] and lines[-1].split()[:3] == ["mean", "0.750", "0.750"]


def test_pr_curves_png(tmp_path):
    preds, targets = random_dataset(0)
    voc = evaluate_voc(preds, targets, CLASSES)
    path = tmp_path / "pr.png"
    save_pr_curves(voc, path, "voc10")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
        pixels = np.asarray(im.convert("RGB"))
    # Something was drawn in matplotlib's first colour (the envelopes).
    assert (np.abs(pixels.astype(int) - [31, 119, 180]).sum(axis=2) < 30).sum() > 100
    assert not math.isnan(voc.map("voc10"))
    with pytest.raises(ValueError, match="metric"):
        save_pr_curves(voc, path, "coco")
