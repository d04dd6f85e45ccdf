"""Which windows a training step learns from: matching windows to ground truth and the paper's
foreground/background sampler (:class:`WindowSampling` is given to the detector's constructor or
to each training call)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sppnet.ops.boxes import box_iou

__all__ = ["WindowSampling", "label_windows", "sample_windows"]


@dataclass
class WindowSampling:
    """How training mode samples windows per image: ``windows_per_image`` of them, at most
    ``fg_fraction`` foreground (IoU >= ``fg_iou``), background IoU in ``bg_iou`` = [low, high).
    The paper: 25% foreground, IoU >= 0.5; background in [0.1, 0.5)."""

    windows_per_image: int = 64
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou: tuple[float, float] = (0.1, 0.5)


def label_windows(
    windows: Tensor, gt_boxes: Tensor, gt_labels: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Match each window to the ground-truth box it overlaps most.

    Args:
        windows: Tensor[K, 4] xyxy.
        gt_boxes: Tensor[G, 4] xyxy (G may be 0).
        gt_labels: Tensor[G] int64 in 1..num_classes.

    Returns:
        ``(max_iou [K] float, matched_gt [K] int64 index into gt (0 when G = 0),
        matched_label [K] int64, the label of that box, 0 when G = 0)``.
    """
    k = windows.shape[0]
    if gt_boxes.shape[0] == 0:
        zeros = torch.zeros(k, dtype=torch.int64, device=windows.device)
        return torch.zeros(k, device=windows.device), zeros, zeros
    iou = box_iou(windows.float(), gt_boxes.float())
    max_iou, matched = iou.max(dim=1)
    return max_iou, matched, gt_labels[matched]


def sample_windows(
    max_iou: Tensor,
    num_samples: int,
    fg_fraction: float = 0.25,
    fg_iou: float = 0.5,
    bg_iou: tuple[float, float] = (0.1, 0.5),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The paper's fine-tuning sampler: foreground IoU >= ``fg_iou``, background IoU in
    ``[bg_iou[0], bg_iou[1])``, at most ``fg_fraction`` of ``num_samples`` foreground.

    Background fills the rest; if an image has too few of either, the batch is smaller (nothing
    is drawn twice).

    Returns:
        ``(fg_index, bg_index)``: Tensor[F] and Tensor[B] int64 into the windows.
    """
    fg = torch.where(max_iou >= fg_iou)[0]
    bg = torch.where((max_iou >= bg_iou[0]) & (max_iou < bg_iou[1]))[0]
    num_fg = min(round(num_samples * fg_fraction), fg.numel())
    num_bg = min(num_samples - num_fg, bg.numel())
    device = max_iou.device
    fg_perm = torch.randperm(fg.numel(), generator=generator)[:num_fg].to(device)
    bg_perm = torch.randperm(bg.numel(), generator=generator)[:num_bg].to(device)
    return fg[fg_perm], bg[bg_perm]
