"""The report's image gallery: which images to show, and each one drawn with its ground truth
(dashed, :func:`~sppnet.utils.draw.draw_ground_truth`) and its detections (solid, coloured by
class, :func:`~sppnet.utils.draw.draw_detections`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sppnet.evaluation.errors import ErrorAnalysis
from sppnet.utils.draw import draw_detections, draw_ground_truth

__all__ = ["pick_gallery", "render_image"]


def pick_gallery(
    analysis: ErrorAnalysis, num_worst: int = 8, num_random: int = 8, seed: int = 0
) -> tuple[list[int], list[int]]:
    """``(worst, sample)``: image indices.

    ``worst``: the images with the most missed boxes plus false positives at the analysis'
    threshold (at most ``num_worst``, only images with at least one error; ties by index).
    ``sample``: ``num_random`` of the other images drawn without replacement with numpy's
    ``default_rng(seed)``, in index order.
    """
    errors = analysis.image_missed + analysis.image_false_positives
    order = np.argsort(-errors, kind="stable")
    worst = [int(i) for i in order[:num_worst] if errors[i] > 0]
    rest = np.setdiff1d(np.arange(errors.size), worst)
    count = min(num_random, rest.size)
    sample = np.sort(np.random.default_rng(seed).choice(rest, size=count, replace=False))
    return worst, [int(i) for i in sample]


def render_image(
    image: Tensor,
    prediction: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    classes: Sequence[str],
    score_threshold: float | None,
    max_side: int = 480,
    quality: int = 85,
) -> tuple[bytes, int, int]:
    """One gallery picture as JPEG bytes: ``(data, width, height)``.

    The image is first shrunk so its longer side is at most ``max_side`` (boxes scaled alike), so
    lines and tags keep a readable size; detections scoring below ``score_threshold`` are left
    out.
    """
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
        raise TypeError(
            "image_loader must return a uint8 Tensor[3, H, W], got "
            f"{getattr(image, 'dtype', type(image).__name__)} {tuple(getattr(image, 'shape', ()))}"
        )
    height, width = int(image.shape[-2]), int(image.shape[-1])
    factor = min(1.0, max_side / max(height, width))
    picture = Image.fromarray(
        np.ascontiguousarray(image.expand(3, -1, -1).permute(1, 2, 0).numpy())
    )
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    scores = prediction["scores"].detach().cpu()
    keep = torch.ones_like(scores, dtype=torch.bool)
    if score_threshold is not None:
        keep = scores >= score_threshold
    picture = draw_ground_truth(
        picture,
        target["boxes"].detach().cpu().float() * factor,
        target["labels"].detach().cpu(),
        classes,
    )
    picture = draw_detections(
        picture,
        prediction["boxes"].detach().cpu().float()[keep] * factor,
        prediction["labels"].detach().cpu()[keep],
        scores[keep],
        classes,
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), picture.width, picture.height
