import pytest
import torch

from sppnet.data import AnnotationError
from sppnet.data.target import (
    check_box,
    coco_to_xyxy,
    empty_target,
    make_target,
    validate_target,
    voc_to_xyxy,
    xyxy_to_voc,
)


def test_conversions():
    # VOC pixel columns 1..10 (1-based, inclusive) are 0-based columns 0..9: x1 = 0, x2 = 10.
    assert voc_to_xyxy(1, 1, 10, 10) == (0.0, 0.0, 10.0, 10.0)
    assert xyxy_to_voc(voc_to_xyxy(3, 4, 7, 9)) == (3, 4, 7, 9)
    assert coco_to_xyxy(1.5, 2, 3, 4) == (1.5, 2.0, 4.5, 6.0)


def test_check_box_clips_within_tolerance_only():
    assert check_box((-0.5, 0, 10.5, 8), (8, 10), "w", tolerance=1) == (0.0, 0, 10.0, 8)
    with pytest.raises(AnnotationError, match=r"^w: box \(-2, 0, 5, 5\).*outside the 10x8"):
        check_box((-2, 0, 5, 5), (8, 10), "w", tolerance=1)
    with pytest.raises(AnnotationError, match="non-positive size"):
        check_box((3, 3, 3, 5), (8, 10), "w")
    with pytest.raises(AnnotationError, match="non-finite"):
        check_box((0, 0, float("inf"), 5), (8, 10), "w")
    with pytest.raises(AnnotationError, match="no area inside"):
        check_box((-1, 0, 0, 5), (8, 10), "w", tolerance=1)


def test_make_and_validate_target():
    target = make_target([(0, 0, 4, 4)], [2], [False], [False], "im", (8, 10))
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    validate_target(target, num_classes=2)
    validate_target(empty_target("e", (3, 3)), num_classes=1)
    with pytest.raises(AnnotationError, match=r"labels must be in 1\.\.1 \(0 is background\)"):
        validate_target(target, num_classes=1)
    zero = dict(target, labels=torch.tensor([0]))
    with pytest.raises(AnnotationError, match="0 is background"):
        validate_target(zero, num_classes=2)
    with pytest.raises(AnnotationError, match=r"'boxes' must be a torch\.float32"):
        validate_target(dict(target, boxes=target["boxes"].double()), num_classes=2)
    with pytest.raises(AnnotationError, match="missing keys"):
        validate_target({"boxes": target["boxes"]}, num_classes=2)
    outside = dict(target, boxes=torch.tensor([[0.0, 0.0, 40.0, 4.0]]))
    with pytest.raises(AnnotationError, match="mine, object 0: box"):
        validate_target(outside, num_classes=2, where="mine")
    with pytest.raises(ValueError, match="same length"):
        make_target([(0, 0, 1, 1)], [], [], [], "x", (2, 2))
