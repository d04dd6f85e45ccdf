"""Draw detections (boxes, class names, scores) on an image: the one place in sppnet that draws.

Boxes follow the project's contract, xyxy with exclusive ``x2``/``y2``: a box covering pixel
columns 0..9 (``x1 = 0, x2 = 10``) is outlined on columns 0 and 9, inside the box.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = ["class_color", "draw_detections", "draw_ground_truth"]

# 20 colours that stay apart from each other and from typical photo content (Kelly's list, the
# near-white and near-black ones left out). Labels past 20 take golden-ratio hues.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)


def class_color(label: int) -> tuple[int, int, int]:
    """A fixed RGB colour for class ``label`` (1-based); the same label always gets the same one."""
    if label < 0:
        raise ValueError(f"class_color: label must be >= 0, got {label}")
    if 1 <= label <= len(_PALETTE):
        return _PALETTE[label - 1]
    hue = (label * 0.6180339887498949) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _to_pil(image: Tensor | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # always a copy
    if not isinstance(image, Tensor):
        raise TypeError(
            f"draw_detections: image must be a uint8 Tensor[3, H, W] or a PIL image, got "
            f"{type(image).__name__}"
        )
    if image.dtype != torch.uint8:
        raise TypeError(
            f"draw_detections: image tensor must be uint8 (RGB 0..255), got {image.dtype}; "
            "convert with (x * 255).round().clamp(0, 255).to(torch.uint8)"
        )
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"draw_detections: image tensor must have shape [3, H, W] or [1, H, W], got "
            f"{tuple(image.shape)}"
        )
    array = image.detach().cpu().expand(3, -1, -1).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small fixed bitmap font
        return ImageFont.load_default()


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_detections(
    image: Tensor | Image.Image,
    boxes: Tensor,
    labels: Tensor | None = None,
    scores: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    *,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Draw boxes with ``"name 0.93"`` tags on a copy of ``image``.

    Args:
        image: Tensor[3, H, W] uint8 RGB (or [1, H, W] grey), or a PIL image; not modified.
        boxes: Tensor[D, 4] xyxy pixels of this image (exclusive ``x2``/``y2``).
        labels: Tensor[D] int, classes 1..num_classes; colours and names follow them. Without
            labels every box takes the first colour and the tag shows the score only.
        scores: Tensor[D]; shown with two decimals; boxes are drawn lowest score first so the
            best ones end on top.
        class_names: names without background, ``class_names[k - 1]`` for label ``k``; without
            it the tag shows the label number.
        line_width: outline width in pixels; default grows with the image (2 px at 400 px).
        font_size: tag text height in pixels; default grows with the image (at least 12).

    Returns:
        A new RGB ``PIL.Image.Image``; save it with ``.save("out.png")`` / ``.save("out.jpg")``.
    """
    canvas = _to_pil(image)
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"draw_detections: boxes must be a Tensor[D, 4], got "
            f"{tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__}"
        )
    d = boxes.shape[0]
    box_list = boxes.detach().float().cpu().tolist()
    label_list = [1] * d
    if labels is not None:
        if labels.shape != (d,) or labels.is_floating_point():
            raise ValueError(
                f"draw_detections: labels must be integers of shape [{d}], got {labels.dtype} "
                f"{tuple(labels.shape)}"
            )
        label_list = [int(v) for v in labels.tolist()]
        if class_names is not None and any(not 1 <= v <= len(class_names) for v in label_list):
            raise ValueError(
                f"draw_detections: labels must lie in 1..{len(class_names)} (len(class_names)), "
                f"got {sorted(set(label_list))}"
            )
    score_list: list[float] | None = None
    if scores is not None:
        if scores.shape != (d,):
            raise ValueError(
                f"draw_detections: scores must have shape [{d}], got {tuple(scores.shape)}"
            )
        score_list = [float(v) for v in scores.tolist()]

    width, height = canvas.size
    short = min(width, height)
    line_width = line_width or max(2, round(short / 200))
    font = _font(font_size or max(12, round(short / 30)))
    draw = ImageDraw.Draw(canvas)
    order = range(d) if score_list is None else sorted(range(d), key=lambda i: score_list[i])
    for i in order:
        x1, y1, x2, y2 = box_list[i]
        if not x2 > x1 or not y2 > y1:
            continue  # an empty box has no pixels to outline
        color = class_color(label_list[i])
        # Exclusive edges to PIL's inclusive corners: the outline sits on the box's own pixels.
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=color, width=line_width)
        parts = []
        if labels is not None:
            parts.append(class_names[label_list[i] - 1] if class_names else str(label_list[i]))
        if score_list is not None:
            parts.append(f"{score_list[i]:.2f}")
        if not parts:
            continue
        text = " ".join(parts)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(1, line_width)
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        # Above the box when there is room, else just inside its top edge; never off the image.
        tx = min(max(x1, 0.0), max(width - tag_w, 0))
        ty = y1 - tag_h if y1 - tag_h >= 0 else max(y1, 0.0)
        ty = min(ty, max(height - tag_h, 0))
        draw.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=color)
        draw.text((tx + pad - left, ty + pad - top), text, fill=_text_color(color), font=font)
    return canvas


def _dashed_line(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    dash: float,
    width: int,
) -> None:
    """Alternate white and black dashes from ``start`` to ``end``: visible on any picture."""
    (x0, y0), (x1, y1) = start, end
    length = max(abs(x1 - x0), abs(y1 - y0))
    steps = max(1, int(length // dash))
    for k in range(steps + 1):
        a, b = k * dash / max(length, 1e-9), min((k + 1) * dash / max(length, 1e-9), 1.0)
        if a >= 1.0:
            break
        segment = (x0 + a * (x1 - x0), y0 + a * (y1 - y0), x0 + b * (x1 - x0), y0 + b * (y1 - y0))
        draw.line(segment, fill=(255, 255, 255) if k % 2 == 0 else (0, 0, 0), width=width)


def draw_ground_truth(
    image: Tensor | Image.Image,
    boxes: Tensor,
    labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    *,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Draw ground-truth boxes on a copy of ``image`` in a style apart from
    :func:`draw_detections`': a dashed white-and-black outline and a white tag with the class
    name in black *below* the box (inside its bottom edge when there is no room), so that the
    detections' coloured tags above their boxes stay readable.

    Args:
        image: Tensor[3, H, W] uint8 RGB (or [1, H, W]), or a PIL image; not modified.
        boxes: Tensor[G, 4] xyxy pixels (exclusive ``x2``/``y2``).
        labels: Tensor[G] int in 1..num_classes (no tags without them).
        class_names: ``class_names[k - 1]`` for label ``k``; without it the label number.
        line_width, font_size: as :func:`draw_detections`.

    Returns:
        A new RGB ``PIL.Image.Image``.
    """
    canvas = _to_pil(image)
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"draw_ground_truth: boxes must be a Tensor[G, 4], got "
            f"{tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__}"
        )
    g = boxes.shape[0]
    if labels is not None and (labels.shape != (g,) or labels.is_floating_point()):
        raise ValueError(
            f"draw_ground_truth: labels must be integers of shape [{g}], got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    width, height = canvas.size
    short = min(width, height)
    line_width = line_width or max(2, round(short / 200))
    font = _font(font_size or max(12, round(short / 30)))
    draw = ImageDraw.Draw(canvas)
    dash = 3.0 * line_width + 3.0
    label_list = [] if labels is None else [int(v) for v in labels.tolist()]
    for i, (x1, y1, x2, y2) in enumerate(boxes.detach().float().cpu().tolist()):
        if not x2 > x1 or not y2 > y1:
            continue
        r, b = x2 - 1, y2 - 1
        for start, end in (
            ((x1, y1), (r, y1)),
            ((r, y1), (r, b)),
            ((r, b), (x1, b)),
            ((x1, b), (x1, y1)),
        ):
            _dashed_line(draw, start, end, dash, line_width)
        if labels is None:
            continue
        label = label_list[i]
        if class_names is not None and not 1 <= label <= len(class_names):
            raise ValueError(
                f"draw_ground_truth: labels must lie in 1..{len(class_names)}, got {label}"
            )
        text = class_names[label - 1] if class_names else str(label)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(1, line_width)
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        tx = min(max(x1, 0.0), max(width - tag_w, 0))
        ty = y2 if y2 + tag_h <= height else max(y2 - tag_h, 0.0)
        draw.rectangle(
            (tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=(255, 255, 255), outline=(0, 0, 0)
        )
        draw.text((tx + pad - left, ty + pad - top), text, fill=(0, 0, 0), font=font)
    return canvas
