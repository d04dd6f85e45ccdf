"""Drawing detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from sppnet.utils.draw import class_color, draw_detections


def _blank(h=120, w=160, value=0):
    return torch.full((3, h, w), value, dtype=torch.uint8)


def test_outline_on_the_box_pixels_in_class_colour():
    image = _blank()
    boxes = torch.tensor([[20.0, 50.0, 60.0, 100.0]])
    out = np.asarray(draw_detections(image, boxes, torch.tensor([3]), line_width=1))
    color = class_color(3)
    # Exclusive x2/y2: the box covers columns 20..59 and rows 50..99; the outline is on them.
    for y, x in [(50, 20), (99, 59), (75, 20), (75, 59), (50, 40), (99, 40)]:
        assert tuple(out[y, x]) == color, (y, x)
    for y, x in [(75, 19), (75, 60), (100, 40), (75, 40)]:
        assert tuple(out[y, x]) == (0, 0, 0), (y, x)
    assert (image == 0).all()  # the input is not modified


def test_tags_and_colours():
    image = _blank(200, 300)
    boxes = torch.tensor([[10.0, 60.0, 100.0, 150.0], [150.0, 60.0, 280.0, 190.0]])
    out = draw_detections(
        image, boxes, torch.tensor([1, 2]), torch.tensor([0.93, 0.5]), ["cat", "dog"]
    )
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (300, 200)
    pixels = np.asarray(out)
    assert class_color(1) != class_color(2)
    # A filled tag in the class colour sits above each box, with text of another colour in it.
    for (x1, y1), label in (((10, 60), 1), ((150, 60), 2)):
        tag = pixels[y1 - 12 : y1, x1 : x1 + 20].reshape(-1, 3)
        colours = {tuple(c) for c in tag}
        assert class_color(label) in colours and len(colours) > 1


def test_tag_inside_when_box_touches_top_and_stays_on_image():
    image = _blank(100, 100)
    box = torch.tensor([[90.0, 0.0, 100.0, 40.0]])
    out = np.asarray(draw_detections(image, box, None, torch.tensor([0.5]), font_size=12))
    # No room above: the tag is drawn inside the box's top, pushed left to stay on the image.
    tag = out[2:10, 75:88].reshape(-1, 3)
    assert {tuple(c) for c in tag} >= {class_color(1)}
    assert not out[20:, :85].any()


def test_distinct_colours_for_many_classes():
    colours = {class_color(k) for k in range(1, 81)}
    assert len(colours) == 80
    assert class_color(7) == class_color(7)


def test_inputs_pil_grey_and_real_photo():
    photo = torch.from_numpy(data.coffee()).permute(2, 0, 1).contiguous()
    boxes = torch.tensor([[200.0, 100.0, 400.0, 300.0], [0.0, 0.0, 50.0, 50.0]])
    from_tensor = draw_detections(photo, boxes, torch.tensor([5, 6]), torch.tensor([0.9, 0.2]))
    from_pil = draw_detections(
        Image.fromarray(data.coffee()), boxes, torch.tensor([5, 6]), torch.tensor([0.9, 0.2])
    )
    assert np.array_equal(np.asarray(from_tensor), np.asarray(from_pil))
    grey = draw_detections(torch.zeros(1, 20, 30, dtype=torch.uint8), torch.zeros(0, 4))
    assert grey.size == (30, 20) and not np.asarray(grey).any()


def test_bad_input():
    boxes = torch.tensor([[0.0, 0.0, 5.0, 5.0]])
    with pytest.raises(TypeError, match="uint8"):
        draw_detections(torch.zeros(3, 10, 10), boxes)
    with pytest.raises(ValueError, match="boxes"):
        draw_detections(_blank(), torch.zeros(4))
    with pytest.raises(ValueError, match=r"1\.\.2"):
        draw_detections(_blank(), boxes, torch.tensor([3]), class_names=["a", "b"])
    with pytest.raises(ValueError, match="scores"):
        draw_detections(_blank(), boxes, scores=torch.zeros(2))
