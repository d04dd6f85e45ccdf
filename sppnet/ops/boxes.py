"""Box utilities for the detector: the R-CNN box coder and per-class NMS.

Boxes are xyxy in pixels with ``x2``/``y2`` exclusive (see docs/architecture.md), so a box's
width is ``x2 - x1`` and its centre ``x1 + width / 2``; no ``+ 1`` anywhere.

What torchvision already provides is re-exported, not rewritten: :func:`box_iou`,
:func:`clip_boxes_to_image` (clamps x to [0, W] and y to [0, H], which with exclusive edges is
exactly "inside the image") and :func:`remove_small_boxes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

__all__ = [
    "BoxCoder",
    "batched_nms_per_class",
    "box_iou",
    "clip_boxes_to_image",
    "decode_boxes",
    "encode_boxes",
    "remove_small_boxes",
]

#: Largest ``dw``/``dh`` fed to ``exp`` when decoding: a box grows at most 1000/16 = 62.5x
#: (the clamp of Detectron and torchvision), so a wild regression output cannot overflow.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float, float]:
    weights = tuple(float(w) for w in weights)
    if len(weights) != 4 or not all(w > 0 and math.isfinite(w) for w in weights):
        raise ValueError(
            f"box coder weights must be 4 positive numbers (wx, wy, ww, wh), got {weights}"
        )
    return weights  # type: ignore[return-value]


def _sizes_centres(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return widths, heights, boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights


def encode_boxes(
    boxes: Tensor, proposals: Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> Tensor:
    """Regression targets that turn ``proposals`` into ``boxes`` (R-CNN, Girshick et al. 2014).

    With proposal width/height/centre ``pw, ph, px, py`` and box ``gw, gh, gx, gy``::

        dx = wx * (gx - px) / pw      dw = ww * log(gw / pw)
        dy = wy * (gy - py) / ph      dh = wh * log(gh / ph)

    Args:
        boxes: Tensor[N, 4] xyxy, the ground-truth boxes, one per proposal.
        proposals: Tensor[N, 4] xyxy with positive width and height (drop degenerate ones first,
            e.g. with :func:`remove_small_boxes`).
        weights: ``(wx, wy, ww, wh)``. ``(1, 1, 1, 1)`` is R-CNN's raw parametrisation (which then
            standardises the targets); Fast/Faster R-CNN use ``(10, 10, 5, 5)``.

    Returns:
        Tensor[N, 4] ``(dx, dy, dw, dh)``, the dtype and device of ``proposals``.

    Raises:
        ValueError: shapes differ or are not [N, 4]; a proposal or box has a non-positive side.
    """
    wx, wy, ww, wh = _check_weights(weights)
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.shape != proposals.shape:
        raise ValueError(
            "encode_boxes: boxes and proposals must both have shape [N, 4], got "
            f"{tuple(boxes.shape)} and {tuple(proposals.shape)}"
        )
    boxes = boxes.to(proposals.dtype)
    pw, ph, px, py = _sizes_centres(proposals)
    gw, gh, gx, gy = _sizes_centres(boxes)
    # Training-time only, so the check's host sync is affordable; log(0) would poison the loss.
    if proposals.numel() and not bool(((pw > 0) & (ph > 0) & (gw > 0) & (gh > 0)).all()):
        raise ValueError("encode_boxes: every proposal and box needs a positive width and height")
    return torch.stack(
        (
            wx * (gx - px) / pw,
            wy * (gy - py) / ph,
            ww * torch.log(gw / pw),
            wh * torch.log(gh / ph),
        ),
        dim=1,
    )


def decode_boxes(
    deltas: Tensor,
    proposals: Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
) -> Tensor:
    """Apply regression outputs to proposals: the inverse of :func:`encode_boxes`.

    Args:
        deltas: Tensor[N, 4 * K] ``(dx, dy, dw, dh)`` per proposal, for K >= 1 classes (class
            ``k``'s deltas in columns ``4k:4k+4``, the layout of a per-class regression head).
        proposals: Tensor[N, 4] xyxy.
        weights: the ``(wx, wy, ww, wh)`` the deltas were encoded with.
        scale_clamp: ``dw``/``dh`` (after dividing by the weights) are clamped to at most this
            before ``exp``, so no box grows by more than ``exp(scale_clamp)``.

    Returns:
        Tensor[N, 4 * K] decoded xyxy boxes (not clipped to the image), the dtype and device of
        ``deltas``.
    """
    wx, wy, ww, wh = _check_weights(weights)
    if deltas.ndim != 2 or deltas.shape[1] == 0 or deltas.shape[1] % 4:
        raise ValueError(
            f"decode_boxes: deltas must have shape [N, 4 * K], got {tuple(deltas.shape)}"
        )
    if proposals.ndim != 2 or proposals.shape != (deltas.shape[0], 4):
        raise ValueError(
            f"decode_boxes: proposals must have shape [{deltas.shape[0]}, 4], got "
            f"{tuple(proposals.shape)}"
        )
    proposals = proposals.to(deltas.dtype)
    pw, ph, px, py = (t[:, None] for t in _sizes_centres(proposals))
    d = deltas.reshape(deltas.shape[0], -1, 4)
    dx, dy = d[..., 0] / wx, d[..., 1] / wy
    dw = torch.clamp(d[..., 2] / ww, max=scale_clamp)
    dh = torch.clamp(d[..., 3] / wh, max=scale_clamp)
    cx, cy = px + dx * pw, py + dy * ph
    half_w, half_h = 0.5 * pw * torch.exp(dw), 0.5 * ph * torch.exp(dh)
    out = torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=2)
    return out.reshape(deltas.shape)


class BoxCoder:
    """:func:`encode_boxes` / :func:`decode_boxes` with fixed weights and clamp.

    Example::

        coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        targets = coder.encode(gt_boxes, proposals)      # [N, 4]
        boxes = coder.decode(head_output, proposals)     # [N, 4 * K]
    """

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ) -> None:
        self.weights = _check_weights(weights)
        self.scale_clamp = float(scale_clamp)

    def encode(self, boxes: Tensor, proposals: Tensor) -> Tensor:
        return encode_boxes(boxes, proposals, self.weights)

    def decode(self, deltas: Tensor, proposals: Tensor) -> Tensor:
        return decode_boxes(deltas, proposals, self.weights, self.scale_clamp)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, scale_clamp={self.scale_clamp:.4g})"


def batched_nms_per_class(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float = 0.3,
    score_threshold: float | None = None,
    max_detections: int | None = None,
) -> Tensor:
    """Per-class greedy NMS (torchvision's :func:`~torchvision.ops.batched_nms`): boxes of
    different labels never suppress each other.

    Args:
        boxes: Tensor[N, 4] xyxy.
        scores: Tensor[N] float.
        labels: Tensor[N] int64, the class of each box.
        iou_threshold: a box is dropped when its IoU with a higher-scoring kept box of the same
            label is greater than this (0.3 in SPP-net and R-CNN).
        score_threshold: if given, only boxes with ``score > score_threshold`` take part.
        max_detections: if given, keep at most this many, the highest-scoring, over all labels.

    Returns:
        Tensor[K] int64 indices into the inputs of the kept boxes, by decreasing score.
    """
    n = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (n,) or labels.shape != (n,):
        raise ValueError(
            "batched_nms_per_class: expected boxes [N, 4], scores [N], labels [N], got "
            f"{tuple(boxes.shape)}, {tuple(scores.shape)}, {tuple(labels.shape)}"
        )
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(
            f"batched_nms_per_class: iou_threshold must be in [0, 1], got {iou_threshold}"
        )
    if max_detections is not None and max_detections < 0:
        raise ValueError(
            f"batched_nms_per_class: max_detections must be >= 0, got {max_detections}"
        )
    if score_threshold is not None:
        candidates = torch.where(scores > score_threshold)[0]
        keep = batched_nms(boxes[candidates], scores[candidates], labels[candidates], iou_threshold)
        keep = candidates[keep]
    else:
        keep = batched_nms(boxes, scores, labels, iou_threshold)
    if max_detections is not None:
        keep = keep[:max_detections]
    return keep
