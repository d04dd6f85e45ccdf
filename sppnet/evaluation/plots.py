"""Precision/recall curves as a PNG (matplotlib's Agg canvas, no pyplot state, no display)."""

from __future__ import annotations

import io
import math
import os

import numpy as np

from sppnet.evaluation.voc import VOCResult, _check_metric
from sppnet.utils.atomic import atomic_write_bytes

__all__ = ["plot_pr_curves", "save_pr_curves"]


def _envelope(precision: np.ndarray) -> np.ndarray:
    """The interpolated precision: the best precision at this recall or any higher one."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def plot_pr_curves(result: VOCResult, metric: str = "voc07", columns: int | None = None):
    """One small precision/recall plot per class, in a grid, on a new Agg figure.

    Each panel shows the raw curve (thin) and its interpolated envelope (thick), titled with the
    class name and its AP under ``metric``; the figure's title carries the mAP.

    Args:
        result: from :func:`sppnet.evaluation.evaluate_voc`.
        metric: ``"voc07"`` or ``"voc10"``, the AP printed in the titles.
        columns: panels per row; default about the square root of the number of classes.

    Returns:
        A ``matplotlib.figure.Figure`` with an Agg canvas attached.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_metric(metric)
    n = len(result.classes)
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(2.6 * columns, 2.4 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    ap = result.ap(metric)
    for index, ax in enumerate(axes.flat):
        if index >= n:
            ax.set_axis_off()
            continue
        name, r = result.classes[index], result.per_class[index]
        if r.num_positives and r.recall.size:
            recall = np.concatenate(([0.0], r.recall))
            precision = np.concatenate(([r.precision[0]], r.precision))
            ax.plot(recall, precision, color="0.6", linewidth=0.8)
            ax.plot(recall, _envelope(precision), color="C0", linewidth=1.8)
        value = ap[name]
        label = "n/a" if math.isnan(value) else f"{value:.3f}"
        ax.set_title(f"{name}  AP {label}", fontsize=9)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.grid(True, linewidth=0.3)
        ax.tick_params(labelsize=7)
    # The lowest panel of each column carries the recall axis (the last row may be short).
    for column in range(min(columns, n)):
        ax = axes.flat[column + columns * ((n - 1 - column) // columns)]
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("recall", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision", fontsize=8)
    mean = result.map(metric)
    fig.suptitle(
        f"PR curves, IoU >= {result.iou_threshold:g}, {result.num_images} images: "
        f"mAP ({metric}) {mean:.3f}",
        fontsize=10,
    )
    return fig


def save_pr_curves(
    result: VOCResult,
    path: str | os.PathLike[str],
    metric: str = "voc07",
    *,
    dpi: int = 100,
) -> None:
    """Write :func:`plot_pr_curves` as a PNG to ``path``, atomically."""
    fig = plot_pr_curves(result, metric)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
