"""Small inline-SVG charts for the HTML report: a precision/recall panel and horizontal bars.

Each function returns one ``<svg>`` element as a string, sized in CSS pixels, with a ``<title>``
on every mark (the browser shows it on hover). Text is escaped; numbers are rounded to 0.1 px so
the markup stays small.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["pr_curve_svg", "stacked_bars_svg"]


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _points(x: np.ndarray, y: np.ndarray, left: float, top: float, w: float, h: float) -> str:
    return " ".join(
        f"{_f(left + a * w)},{_f(top + (1 - b) * h)}" for a, b in zip(x, y, strict=True)
    )


def _thin(recall: np.ndarray, precision: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` points of a curve, the first and last kept."""
    if recall.size <= limit:
        return recall, precision
    keep = np.unique(np.linspace(0, recall.size - 1, limit).round().astype(np.int64))
    return recall[keep], precision[keep]


def pr_curve_svg(
    recall: np.ndarray,
    precision: np.ndarray,
    title: str,
    *,
    width: int = 180,
    height: int = 150,
    max_points: int = 200,
) -> str:
    """One precision/recall panel: the raw curve (grey) and its interpolated envelope (blue).

    Args:
        recall, precision: float arrays [D] after each ranked detection (NaN recall: no curve).
        title: the panel's heading (class name and AP).
        width, height: the panel's size in pixels.
        max_points: the curves are thinned to this many points.
    """
    left, top, right, bottom = 30.0, 18.0, 8.0, 22.0
    w, h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="pr" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_esc(title)}">',
        f'<text x="{_f(width / 2)}" y="12" text-anchor="middle" class="t">{_esc(title)}</text>',
        f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(w)}" height="{_f(h)}" class="frame"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        x, y = left + tick * w, top + (1 - tick) * h
        parts.append(
            f'<text x="{_f(x)}" y="{_f(top + h + 11)}" text-anchor="middle">{tick:g}</text>'
        )
        parts.append(f'<text x="{_f(left - 3)}" y="{_f(y + 3)}" text-anchor="end">{tick:g}</text>')
    parts.append(
        f'<text x="{_f(left + w / 2)}" y="{height - 1}" text-anchor="middle">recall</text>'
    )
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.size and not np.isnan(recall).any():
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        r, p = _thin(recall, precision, max_points)
        r_env, p_env = _thin(recall, envelope, max_points)
        # The envelope drawn as steps from recall 0, as the area AP integrates it.
        steps_x = np.concatenate(([0.0], np.repeat(r_env, 2)[:-1]))
        steps_y = np.repeat(p_env, 2)
        parts.append(f'<polyline class="raw" points="{_points(r, p, left, top, w, h)}"/>')
        parts.append(
            f'<polyline class="env" points="{_points(steps_x, steps_y, left, top, w, h)}">'
            f"<title>{_esc(title)}: interpolated precision</title></polyline>"
        )
    else:
        parts.append(
            f'<text x="{_f(left + w / 2)}" y="{_f(top + h / 2)}" text-anchor="middle">'
            "no detections or no ground truth</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars_svg(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    colors: Mapping[str, str],
    *,
    width: int = 560,
    bar_height: int = 16,
    label_width: int = 110,
    normalize: bool = True,
    unit: str = "",
) -> str:
    """Horizontal stacked bars, one per row, with a legend.

    Args:
        rows: ``(label, {part: value})``; parts are drawn in the order of ``colors``.
        colors: ``{part: CSS colour}``.
        width: the chart's width in pixels.
        normalize: each bar shows shares of its own total (the full width is 100%); otherwise
            bars share one scale, the largest total spanning the width.
        unit: appended to values in the hover titles (e.g. ``" s"``).
    """
    gap = 6
    legend_h = 20
    bar_w = width - label_width - 60
    totals = [sum(float(v) for v in parts.values()) for _, parts in rows]
    largest = max([t for t in totals if t > 0], default=1.0)
    height = legend_h + len(rows) * (bar_height + gap) + 2
    out = [
        f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img">'
    ]
    x = float(label_width)
    for name, color in colors.items():
        out.append(f'<rect x="{_f(x)}" y="4" width="10" height="10" fill="{_esc(color)}"/>')
        out.append(f'<text x="{_f(x + 14)}" y="13">{_esc(name)}</text>')
        x += 24 + 7 * len(name)
    for i, ((label, parts), total) in enumerate(zip(rows, totals, strict=True)):
        y = legend_h + i * (bar_height + gap)
        out.append(
            f'<text x="{label_width - 6}" y="{_f(y + bar_height * 0.75)}" text-anchor="end">'
            f"{_esc(label)}</text>"
        )
        scale = (1.0 / total if total > 0 else 0.0) if normalize else 1.0 / largest
        x = float(label_width)
        for name, color in colors.items():
            value = float(parts.get(name, 0.0))
            span = value * scale * bar_w
            if span <= 0 or math.isnan(span):
                continue
            share = f" ({100 * value / total:.0f}%)" if total > 0 else ""
            out.append(
                f'<rect x="{_f(x)}" y="{y}" width="{_f(span)}" height="{bar_height}" '
                f'fill="{_esc(color)}"><title>{_esc(label)}: {_esc(name)} '
                f"{value:.4g}{_esc(unit)}{share}</title></rect>"
            )
            x += span
        text = f"{total:.3g}{unit}" if not normalize else f"n={total:g}"
        out.append(f'<text x="{_f(x + 4)}" y="{_f(y + bar_height * 0.75)}">{_esc(text)}</text>')
    out.append("</svg>")
    return "".join(out)
