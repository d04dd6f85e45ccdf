"""Proposal quality: the fraction of ground-truth boxes that some proposal covers, vs budget.

For a budget of ``k`` proposals per image (the first ``k`` of each image's list, or all of them if
it has fewer), recall at IoU ``t`` is the fraction of ground-truth boxes over the whole dataset
whose best IoU with those ``k`` proposals is at least ``t`` (Hosang et al., "What makes for
effective detection proposals?", 2015). IoU uses the project's box convention (xyxy, exclusive
edges: area = (x2 - x1) * (y2 - y1)).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from sppnet.utils.atomic import atomic_write_bytes

__all__ = ["DEFAULT_COUNTS", "RecallCurve", "format_recall_table", "plot_recall", "proposal_recall"]

DEFAULT_COUNTS = (10, 20, 50, 100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class RecallCurve:
    """Recall vs number of proposals per image, for a few IoU thresholds.

    Attributes:
        counts: the budgets k (proposals per image), increasing.
        iou_thresholds: the thresholds t.
        recall: Tensor[T, K] float64, ``recall[i, j]`` at ``iou_thresholds[i]`` and ``counts[j]``.
        num_gt: the number of ground-truth boxes counted (the denominator).
        num_images: images evaluated.
        mean_proposals: average number of proposals per image (before any budget).
    """

    counts: tuple[int, ...]
    iou_thresholds: tuple[float, ...]
    recall: Tensor
    num_gt: int
    num_images: int
    mean_proposals: float

    def at(self, iou: float, count: int) -> float:
        """Recall at one threshold and budget (both must be among those computed)."""
        return float(self.recall[self.iou_thresholds.index(iou), self.counts.index(count)])

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"counts", "num_gt", "num_images", "mean_proposals",
        "recall": {"0.5": [...], "0.7": [...]}}``."""
        return {
            "counts": list(self.counts),
            "num_gt": self.num_gt,
            "num_images": self.num_images,
            "mean_proposals": self.mean_proposals,
            "recall": {
                f"{t:g}": self.recall[i].tolist() for i, t in enumerate(self.iou_thresholds)
            },
        }


def proposal_recall(
    proposals: Iterable[Tensor],
    gt_boxes: Iterable[Tensor],
    counts: Sequence[int] = DEFAULT_COUNTS,
    iou_thresholds: Sequence[float] = (0.5, 0.7),
) -> RecallCurve:
    """Recall of ground-truth boxes by the top-k proposals of each image.

    Args:
        proposals: per image, Tensor[M_i, 4] xyxy, best first.
        gt_boxes: per image (same order), Tensor[G_i, 4] xyxy; leave out boxes that should not
            count (e.g. VOC's ``difficult`` ones).
        counts: budgets k, positive and increasing.
        iou_thresholds: IoU thresholds in (0, 1].

    Raises:
        ValueError: mismatched lengths, or bad ``counts``/``iou_thresholds``.
    """
    counts = tuple(int(c) for c in counts)
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not counts or any(c < 1 for c in counts) or list(counts) != sorted(set(counts)):
        raise ValueError(f"counts must be positive and strictly increasing, got {list(counts)}")
    if not thresholds or any(not 0 < t <= 1 for t in thresholds):
        raise ValueError(f"iou_thresholds must be in (0, 1], got {list(thresholds)}")

    covered = torch.zeros(len(thresholds), len(counts), dtype=torch.float64)
    num_gt = num_images = total_proposals = 0
    proposals, gt_boxes = list(proposals), list(gt_boxes)
    if len(proposals) != len(gt_boxes):
        raise ValueError(f"{len(proposals)} proposal lists but {len(gt_boxes)} ground-truth lists")
    limits = torch.tensor(thresholds, dtype=torch.float64)[:, None, None]
    for boxes, gt in zip(proposals, gt_boxes, strict=True):
        num_images += 1
        total_proposals += len(boxes)
        if len(gt) == 0:
            continue
        num_gt += len(gt)
        if len(boxes) == 0:
            continue
        boxes = boxes[: counts[-1]].to(gt.device, torch.float64)
        # best[g, m]: the best IoU of gt box g among proposals 0..m.
        best = box_iou(gt.to(torch.float64), boxes).cummax(dim=1).values
        columns = torch.tensor([min(c, len(boxes)) - 1 for c in counts], device=best.device)
        at_budget = best[:, columns].cpu()  # [G, K]
        covered += (at_budget[None] >= limits).sum(1)
    recall = covered / max(num_gt, 1)
    return RecallCurve(
        counts, thresholds, recall, num_gt, num_images, total_proposals / max(num_images, 1)
    )


def format_recall_table(curves: Mapping[str, RecallCurve]) -> str:
    """A plain-text table: one row per (curve, IoU threshold), one column per budget."""
    if not curves:
        return ""
    counts = next(iter(curves.values())).counts
    header = ["proposals", "IoU"] + [str(c) for c in counts]
    rows = [header]
    for label, curve in curves.items():
        if curve.counts != counts:
            raise ValueError("all curves in one table must use the same counts")
        for i, t in enumerate(curve.iou_thresholds):
            rows.append([label, f"{t:g}"] + [f"{v:.3f}" for v in curve.recall[i].tolist()])
    widths = [max(len(r[j]) for r in rows) for j in range(len(header))]
    lines = []
    for row in rows:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def plot_recall(
    curves: Mapping[str, RecallCurve], path: str | os.PathLike[str], title: str | None = None
) -> None:
    """Plot recall vs proposals per image (log x axis), one line per curve and threshold, to PNG.

    The file is written atomically.
    """
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend state

    figure = Figure(figsize=(8.6, 4.4), dpi=100)
    axes = figure.add_subplot()
    styles = ["-", "--", ":", "-."]
    for index, (label, curve) in enumerate(curves.items()):
        colour = f"C{index}"
        for i, t in enumerate(curve.iou_thresholds):
            axes.plot(
                curve.counts,
                curve.recall[i].tolist(),
                styles[i % len(styles)],
                color=colour,
                marker="o",
                markersize=3,
                label=f"{label}, IoU {t:g}",
            )
    axes.set_xscale("log")
    axes.set_xlabel("proposals per image")
    axes.set_ylabel("recall")
    axes.set_ylim(0, 1.0)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside the axes
    if title:
        axes.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
