"""VOC AP: hand-worked cases, and agreement with a literal port of the devkit's loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_detections import FAR, A, B, make_pred, make_target, random_dataset

from sppnet.evaluation import average_precision, evaluate_voc

# ----------------------------------------------------------------------------- hand-worked cases


def test_perfect_detections_give_one():
    targets = [make_target([A, B], [1, 2]), make_target([B], [1])]
    preds = [make_pred([A, B], [1, 2], [0.3, 0.9]), make_pred([B], [1], [0.8])]
    r = evaluate_voc(preds, targets, ["cat", "dog"])
    assert r.ap("voc07") == {"cat": 1.0, "dog": 1.0}
    assert r.ap("voc10") == {"cat": 1.0, "dog": 1.0}
    assert r.map("voc07") == 1.0
    assert r.per_class[0].num_tp == 2 and r.per_class[0].num_fp == 0


def test_false_positive_ranked_above_true_positive():
    # One box. Ranked: FP (0.9), TP (0.5).
    #   recall    [0, 1]     precision [0, 1/2]
    #   voc10: the envelope is 1/2 on (0, 1]  -> area 1/2
    #   voc07: max precision at recall >= t is 1/2 for all 11 t -> 1/2
    r = evaluate_voc([make_pred([FAR, A], [1, 1], [0.9, 0.5])], [make_target([A], [1])], 1)
    c = r.per_class[0]
    np.testing.assert_array_equal(c.tp, [False, True])
    np.testing.assert_allclose(c.recall, [0.0, 1.0])
    np.testing.assert_allclose(c.precision, [0.0, 0.5])
    assert c.ap["voc10"] == pytest.approx(0.5)
    assert c.ap["voc07"] == pytest.approx(0.5)


def test_duplicate_detection_is_false_positive_and_metrics_differ():
    # Boxes A and B of one class. Ranked: A (0.9, TP), A again shifted (0.8, duplicate: FP),
    # B (0.7, TP).
    #   recall    [1/2, 1/2, 1]      precision [1, 1/2, 2/3]
    #   voc10: envelope 1 on (0, 1/2], 2/3 on (1/2, 1] -> 1/2 + 1/3 = 0.8333...
    #   voc07: t = 0 .. 0.5 (6 points) -> 1; t = 0.6 .. 1 (5 points) -> 2/3
    #          -> (6 + 10/3) / 11 = 0.848484...
    dup = [0.5, 0.0, 10.5, 10.0]  # IoU with A = 95 / 105 = 0.905
    r = evaluate_voc(
        [make_pred([A, dup, B], [1, 1, 1], [0.9, 0.8, 0.7])], [make_target([A, B], [1, 1])], 1
    )
    c = r.per_class[0]
    np.testing.assert_array_equal(c.tp, [True, False, True])
    assert c.ap["voc10"] == pytest.approx(0.5 + 1.0 / 3.0)
    assert c.ap["voc07"] == pytest.approx((6 + 10 / 3) / 11)
    assert c.ap["voc07"] != pytest.approx(c.ap["voc10"])


def test_difficult_match_is_ignored():
    # Boxes: A (normal), B (difficult). Ranked: on B (0.9, ignored), FAR (0.85, FP), on A (0.8, TP).
    # Counted: FP, TP -> recall [0, 1], precision [0, 1/2] -> AP 1/2 (both metrics).
    # (Counting the difficult hit as FP would give 1/3; as a normal box, 0.8333.)
    preds = [make_pred([B, FAR, A], [1, 1, 1], [0.9, 0.85, 0.8])]
    r = evaluate_voc(preds, [make_target([A, B], [1, 1], [False, True])], 1)
    c = r.per_class[0]
    assert c.num_positives == 1 and c.num_difficult == 1 and c.num_ignored == 1
    np.testing.assert_allclose(c.scores, [0.85, 0.8])
    assert c.ap["voc10"] == pytest.approx(0.5)
    assert c.ap["voc07"] == pytest.approx(0.5)
    # Duplicates on a difficult box are ignored too, as in the devkit.
    preds = [make_pred([B, B, A], [1, 1, 1], [0.9, 0.85, 0.8])]
    r = evaluate_voc(preds, [make_target([A, B], [1, 1], [False, True])], 1)
    assert r.per_class[0].num_ignored == 2 and r.per_class[0].ap["voc10"] == 1.0


def test_taken_box_is_not_replaced_by_next_best():
    # The devkit matches a detection to its highest-IoU box only; if that box is taken it is a
    # FP even when another free box overlaps it by >= 0.5.
    # A and C = [2, 0, 12, 10] overlap (IoU 2/3). d2 = [0.5, 0, 10.5, 10]: IoU with A 0.905,
    # with C 85/115 = 0.739. Ranked: A (TP), d2 (FP: A taken).
    #   recall [1/2, 1/2], precision [1, 1/2]
    #   voc10: 1/2 * 1 = 0.5;   voc07: t = 0 .. 0.5 -> 1, rest 0 -> 6/11
    C = [2.0, 0.0, 12.0, 10.0]
    r = evaluate_voc(
        [make_pred([A, [0.5, 0.0, 10.5, 10.0]], [1, 1], [0.9, 0.8])],
        [make_target([A, C], [1, 1])],
        1,
    )
    c = r.per_class[0]
    np.testing.assert_array_equal(c.tp, [True, False])
    assert c.ap["voc10"] == pytest.approx(0.5)
    assert c.ap["voc07"] == pytest.approx(6 / 11)


def test_iou_threshold_is_inclusive_and_configurable():
    half = [0.0, 0.0, 10.0, 5.0]  # IoU with A exactly 50 / 100
    preds, targets = [make_pred([half], [1], [1.0])], [make_target([A], [1])]
    assert evaluate_voc(preds, targets, 1).map("voc10") == 1.0
    assert evaluate_voc(preds, targets, 1, iou_threshold=0.6).map("voc10") == 0.0


def test_classes_are_separate_and_missing_classes_are_nan():
    # Class 2's detection sits on a class-1 box: a FP for class 2, nothing for class 1.
    # Class 3 has no box at all: NaN, left out of the mAP.
    preds = [make_pred([A, A], [1, 2], [0.9, 0.95])]
    targets = [make_target([A, B], [1, 2])]
    r = evaluate_voc(preds, targets, ["a", "b", "c"])
    ap = r.ap("voc10")
    assert ap["a"] == 1.0 and ap["b"] == 0.0 and math.isnan(ap["c"])
    assert r.map("voc10") == pytest.approx(0.5)


def test_no_detections_and_no_images():
    r = evaluate_voc([make_pred([], [], [])], [make_target([A], [1])], 1)
    assert r.per_class[0].ap == {"voc07": 0.0, "voc10": 0.0}
    empty = evaluate_voc([], [], ["x"])
    assert math.isnan(empty.map("voc07")) and empty.num_images == 0


def test_average_precision_of_known_curve():
    # Recall 0.2 -> precision 1, recall 0.6 -> precision 0.5:
    #   voc10: 0.2 * 1 + 0.4 * 0.5 = 0.4
    #   voc07: t = 0, .1, .2 -> 1; t = .3 .. .6 -> 0.5; t = .7 .. 1 -> 0  => (3 + 2) / 11
    rec, prec = np.array([0.2, 0.6]), np.array([1.0, 0.5])
    assert average_precision(rec, prec, "voc10") == pytest.approx(0.4)
    assert average_precision(rec, prec, "voc07") == pytest.approx(5 / 11)
    assert average_precision(np.zeros(0), np.zeros(0), "voc10") == 0.0
    with pytest.raises(ValueError, match="metric"):
        average_precision(rec, prec, "coco")


_GT = [make_target([A], [1])]
_ONE = torch.ones(1, dtype=torch.long)


@pytest.mark.parametrize(
    ("preds", "targets", "message"),
    [
        ([], _GT, "0 predictions but 1 targets"),
        ([make_pred([A], [0], [1.0])], _GT, r"labels.*1\.\.1"),
        ([make_pred([A], [1], [1.0])], [make_target([A], [2])], r"targets\[0\]\['labels'\]"),
        ([{"boxes": torch.zeros(1, 4), "labels": _ONE}], _GT, "scores"),
        ([make_pred([A], [1], [float("nan")])], _GT, "NaN"),
        (
            [make_pred([A], [1], [1.0])],
            [{**_GT[0], "difficult": torch.zeros(2).bool()}],
            "difficult",
        ),
        ([{"boxes": torch.zeros(1, 5), "labels": _ONE, "scores": torch.ones(1)}], _GT, r"\[N, 4\]"),
    ],
)
def test_bad_input_raises(preds, targets, message):
    with pytest.raises(ValueError, match=message):
        evaluate_voc(preds, targets, 1)


# ------------------------------------------------------- against a literal port of the devkit


def _devkit_voc_eval(preds, targets, cls, iou_threshold, use_07_metric):
    """VOCevaldet.m / py-faster-rcnn's voc_eval, loop for loop, for one class.

    Differences from the Python port are the devkit's own: ``>=`` on the overlap (VOCevaldet.m),
    a stable sort (Matlab's), exact tenths for the 11 points, and boxes with exclusive x2/y2, so
    no ``+ 1``.
    """
    gts, npos = {}, 0
    for i, t in enumerate(targets):
        keep = t["labels"].numpy() == cls
        bbox = t["boxes"].numpy().astype(np.float64)[keep]
        diff = t["difficult"].numpy()[keep] if "difficult" in t else np.zeros(len(bbox), bool)
        gts[i] = {"bbox": bbox, "difficult": diff, "det": [False] * len(bbox)}
        npos += int((~diff).sum())
    image_ids, confidence, bb = [], [], []
    for i, p in enumerate(preds):
        keep = p["labels"].numpy() == cls
        for box, score in zip(p["boxes"].numpy()[keep], p["scores"].numpy()[keep], strict=True):
            image_ids.append(i)
            confidence.append(float(score))
            bb.append(box.astype(np.float64))
    order = np.argsort(-np.array(confidence), kind="stable")
    nd = len(order)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = gts[image_ids[order[d]]]
        b = bb[order[d]]
        ovmax, jmax = -np.inf, -1
        BBGT = R["bbox"]
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], b[0])
            iymin = np.maximum(BBGT[:, 1], b[1])
            ixmax = np.minimum(BBGT[:, 2], b[2])
            iymax = np.minimum(BBGT[:, 3], b[3])
            iw = np.maximum(ixmax - ixmin, 0.0)
            ih = np.maximum(iymax - iymin, 0.0)
            inters = iw * ih
            uni = (
                (b[2] - b[0]) * (b[3] - b[1])
                + (BBGT[:, 2] - BBGT[:, 0]) * (BBGT[:, 3] - BBGT[:, 1])
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = int(np.argmax(overlaps))
        if ovmax >= iou_threshold:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in (k / 10 for k in range(11)):  # Matlab's 0:0.1:1 (numpy's arange drifts)
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("iou_threshold", [0.5, 0.7])
def test_matches_devkit_port_on_random_data(seed, iou_threshold):
    preds, targets = random_dataset(seed)
    r = evaluate_voc(preds, targets, 3, iou_threshold=iou_threshold)
    for k in range(1, 4):
        c = r.per_class[k - 1]
        if c.num_positives == 0:
            assert math.isnan(c.ap["voc07"]) and math.isnan(c.ap["voc10"])
            continue
        for metric, use_07 in (("voc07", True), ("voc10", False)):
            expected = _devkit_voc_eval(preds, targets, k, iou_threshold, use_07)
            assert c.ap[metric] == pytest.approx(expected, abs=1e-12), (k, metric)


@given(seed=st.integers(0, 10_000), scale=st.floats(0.25, 8.0))
@settings(max_examples=20)
def test_invariances(seed, scale):
    preds, targets = random_dataset(seed, num_images=6)
    g = torch.Generator().manual_seed(seed)
    for p in preds:  # distinct scores, so that image order cannot reorder ties
        p["scores"] = torch.rand(p["scores"].shape, generator=g, dtype=torch.float64)
    base = evaluate_voc(preds, targets, 3)
    # Scaling every box leaves every IoU, hence every AP, unchanged.
    scaled = evaluate_voc(
        [{**p, "boxes": p["boxes"] * scale} for p in preds],
        [{**t, "boxes": t["boxes"] * scale} for t in targets],
        3,
    )
    # So does the order of the images.
    order = torch.randperm(len(preds), generator=g).tolist()
    shuffled = evaluate_voc([preds[i] for i in order], [targets[i] for i in order], 3)
    # And a false positive scored below everything else: it only lowers the curve's tail.
    extra = dict(preds[0])
    extra["boxes"] = torch.cat([extra["boxes"], torch.tensor([[1e4, 1e4, 1e4 + 5, 1e4 + 5]])])
    extra["labels"] = torch.cat([extra["labels"], torch.tensor([1])])
    extra["scores"] = torch.cat([extra["scores"], torch.tensor([-1.0], dtype=torch.float64)])
    with_fp = evaluate_voc([extra, *preds[1:]], targets, 3)
    for metric in ("voc07", "voc10"):
        expected = base.ap(metric)
        for other in (scaled, shuffled, with_fp):
            got = other.ap(metric)
            for name, value in expected.items():
                if math.isnan(value):
                    assert math.isnan(got[name])
                else:
                    assert 0.0 <= value <= 1.0
                    assert got[name] == pytest.approx(value, abs=1e-12), (metric, name)


def test_iscrowd_is_ignored_like_difficult():
    # A COCO crowd box, evaluated with the VOC metric, is ignored like a difficult one.
    target = {**make_target([A, B], [1, 1]), "iscrowd": torch.tensor([False, True])}
    preds = [make_pred([B, FAR, A], [1, 1, 1], [0.9, 0.85, 0.8])]
    c = evaluate_voc(preds, [target], 1).per_class[0]
    assert c.num_positives == 1 and c.num_ignored == 1 and c.ap["voc10"] == pytest.approx(0.5)
