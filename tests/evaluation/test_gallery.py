"""The gallery's drawing: ground truth dashed with its tag below, detections solid above."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.evaluation.gallery import render_image
from sppnet.utils.draw import draw_ground_truth


def test_ground_truth_is_dashed_black_and_white_with_the_tag_below():
    image = torch.full((3, 120, 160), 90, dtype=torch.uint8)
    boxes = torch.tensor([[20.0, 20.0, 120.0, 70.0]])
    out = np.asarray(draw_ground_truth(image, boxes, torch.tensor([2]), ["cat", "dog"]))
    top_edge = out[20, 20:120]
    white = (top_edge == 255).all(axis=1)
    black = (top_edge == 0).all(axis=1)
    assert white.sum() > 20 and black.sum() > 20 and (white | black).all()
    assert (np.diff(white.astype(int)) != 0).sum() >= 6  # dashes, not one line
    below = out[70:90, 20:60]
    assert (below == 255).all(axis=2).sum() > 50 and (below == 0).all(axis=2).sum() > 10
    above = out[0:19, :]
    assert (above == 90).all()  # nothing drawn above the box: that is where detections' tags go
    assert (image == 90).all()  # the input is untouched
    with pytest.raises(ValueError, match=r"labels must lie in 1\.\.2"):
        draw_ground_truth(image, boxes, torch.tensor([3]), ["cat", "dog"])
    with pytest.raises(ValueError, match=r"Tensor\[G, 4\]"):
        draw_ground_truth(image, boxes[0])


def test_render_image_shrinks_and_filters_by_score():
    image = torch.full((3, 600, 960), 128, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[100.0, 100.0, 400.0, 300.0]]), "labels": torch.tensor([1])}
    prediction = {
        "boxes": torch.tensor([[500.0, 100.0, 900.0, 500.0], [100.0, 350.0, 300.0, 550.0]]),
        "labels": torch.tensor([1, 1]),
        "scores": torch.tensor([0.9, 0.2]),
    }
    data, width, height = render_image(image, prediction, target, ["a"], 0.5, max_side=480)
    assert (width, height) == (480, 300)
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 120)
    assert red[50:250, 250:450].sum() > 100  # the 0.9 detection, in class 1's colour, halved
    assert red[175:275, 50:150].sum() == 0  # the 0.2 one is below the threshold
