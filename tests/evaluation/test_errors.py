"""Hoiem et al.'s error analysis on hand-made detections whose error types are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_detections import FAR, A, B, make_pred, make_target, random_dataset

from sppnet.evaluation import evaluate_voc
from sppnet.evaluation.errors import KINDS, analyze_errors, match_detections

A_SHIFTED = [6.0, 0.0, 16.0, 10.0]  # IoU with A: 40 / 160 = 0.25
A_GRAZING = [9.5, 0.0, 19.5, 10.0]  # IoU with A: 5 / 195 = 0.026 (below 0.1)
SMALL = [200.0, 200.0, 210.0, 210.0]  # 100 px: small
LARGE = [0.0, 100.0, 120.0, 220.0]  # 14400 px: large (B is 200 px: small)


def _hand_made():
    targets = [
        make_target([A, B], [1, 2]),
        make_target([A, SMALL, LARGE], [1, 2, 2], difficult=[True, False, False]),
    ]
    predictions = [
        make_pred(
            [A, A, A_SHIFTED, B, FAR, B, A_GRAZING],
            [1, 1, 1, 1, 1, 2, 1],
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.1],
        ),
        # Class 1 on the difficult box (ignored), class 2 on the large box (TP), class 2 on the
        # difficult class-1 box (confusion with class 1).
        make_pred([A, LARGE, A], [1, 2, 2], [0.99, 0.3, 0.2]),
    ]
    return predictions, targets


def test_each_detection_gets_its_known_type():
    predictions, targets = _hand_made()
    m = match_detections(predictions, targets, ["cat", "dog"])
    kinds = [KINDS[k] for k in m.kind]
    assert kinds == [
        "tp",
        "duplicate",
        "localization",
        "confusion",
        "background",
        "tp",
        "background",  # grazing: IoU 0.026 < 0.1 with its own class's box
        "ignored",
        "tp",
        "confusion",
    ]
    assert m.confused_with.tolist() == [0, 0, 0, 2, 0, 0, 0, 0, 0, 1]
    np.testing.assert_allclose(m.iou_own[:3], [1.0, 1.0, 0.25])
    assert m.gt_index.tolist() == [0, 0, -1, -1, -1, 1, -1, 2, 4, -1]


def test_top_false_positives_split_and_counts():
    predictions, targets = _hand_made()
    m = match_detections(predictions, targets, ["cat", "dog"])
    analysis = analyze_errors(m, max_false_positives=10)
    cat, dog = analysis.per_class
    # cat's false positives by score: duplicate 0.8, shifted 0.7, on B 0.6, far 0.5, grazing 0.1.
    assert cat.top_kinds == (
        "localization",
        "localization",
        "confusion",
        "background",
        "background",
    )
    assert cat.false_positive_types == {"localization": 2, "confusion": 1, "background": 2}
    assert cat.duplicates == 1
    assert cat.confused_with == {"dog": 1}
    assert (cat.tp, cat.fp, cat.num_positives) == (1, 5, 1)
    assert cat.precision == pytest.approx(1 / 6) and cat.recall == 1.0
    assert dog.false_positive_types == {"localization": 0, "confusion": 1, "background": 0}
    assert dog.confused_with == {"cat": 1}
    assert (dog.tp, dog.fp, dog.num_positives) == (2, 1, 3)
    assert dog.recall == pytest.approx(2 / 3)
    # dog's boxes: B (200 px, small, found), SMALL (missed), LARGE (found).
    assert dog.missed_by_size == {
        "small": {"num_gt": 2, "missed": 1},
        "medium": {"num_gt": 0, "missed": 0},
        "large": {"num_gt": 1, "missed": 0},
    }
    # By default as many false positives as the class has boxes: cat has one.
    default = analyze_errors(m).per_class[0]
    assert default.top_false_positives == 1 and default.top_kinds == ("localization",)
    assert analysis.image_missed.tolist() == [0, 1]
    assert analysis.image_false_positives.tolist() == [5, 1]
    assert analysis.image_true_positives.tolist() == [2, 1]


def test_confusion_matrix_rows_are_the_box_classes():
    predictions, targets = _hand_made()
    analysis = analyze_errors(match_detections(predictions, targets, 2))
    # Rows: cat, dog, background; columns: detected cat, detected dog, missed.
    expected = np.array(
        [
            [3, 1, 0],  # cat TP + duplicate + localisation; dog detection on the difficult cat
            [1, 2, 1],  # cat detection on B; dog TPs; the SMALL dog missed
            [2, 0, 0],  # cat on FAR and the grazing one
        ]
    )
    np.testing.assert_array_equal(analysis.confusion, expected)


def test_score_threshold_filters_precision_recall_and_matrix():
    predictions, targets = _hand_made()
    analysis = analyze_errors(match_detections(predictions, targets, 2), score_threshold=0.65)
    cat, dog = analysis.per_class
    assert (cat.tp, cat.fp) == (1, 2)  # 0.9 TP; 0.8 duplicate and 0.7 localisation
    assert (dog.tp, dog.fp) == (1, 0)  # only 0.95 on B survives
    assert dog.recall == pytest.approx(1 / 3)
    assert analysis.missed_by_size["large"] == {"num_gt": 1, "missed": 1}
    assert analysis.confusion[:, 2].tolist() == [0, 2, 0]
    # The false-positive split does not depend on the threshold.
    assert (
        cat.false_positive_types
        == analyze_errors(match_detections(predictions, targets, 2))
        .per_class[0]
        .false_positive_types
    )


def test_true_positives_equal_evaluate_voc_on_random_data():
    for seed in range(4):
        predictions, targets = random_dataset(seed, num_images=15)
        voc = evaluate_voc(predictions, targets, 3)
        m = match_detections(predictions, targets, 3)
        analysis = analyze_errors(m)
        for k, r in enumerate(voc.per_class, start=1):
            mine = analysis.per_class[k - 1]
            assert (mine.tp, mine.fp) == (r.num_tp, r.num_fp)
            assert int(((m.label == k) & (m.kind == KINDS.index("ignored"))).sum()) == r.num_ignored
            if r.num_positives:
                assert mine.recall == pytest.approx(r.num_tp / r.num_positives)
            else:
                assert math.isnan(mine.recall)
        totals = analysis.false_positive_totals()
        assert sum(totals.values()) == sum(c.top_false_positives for c in analysis.per_class)


def test_empty_and_bad_input():
    m = match_detections([make_pred([], [], [])], [make_target([], [])], ["a"])
    analysis = analyze_errors(m)
    assert analysis.confusion.tolist() == [[0, 0], [0, 0]]
    assert math.isnan(analysis.per_class[0].precision)
    assert analysis.to_dict()["per_class"]["a"]["recall"] is None
    with pytest.raises(ValueError, match="confusion_iou"):
        match_detections([], [], 1, confusion_iou=0.6)
    with pytest.raises(ValueError, match="1 predictions but 0 targets"):
        match_detections([make_pred([], [], [])], [], 1)
    with pytest.raises(ValueError, match="max_false_positives"):
        analyze_errors(m, max_false_positives=0)
