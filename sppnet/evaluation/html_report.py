"""A self-contained HTML evaluation report: ``index.html`` (inline CSS, script and SVG charts), the
gallery's JPEGs in ``images/`` beside it, and ``report.json``, the data it was drawn from.

Sections: the run; the per-class table (VOC07 AP, VOC10 AP, COCO AP, AP50, precision and recall
at the score threshold, counts), sortable; PR curves per class; the class confusion matrix; the
error analysis (Hoiem et al.: the top false positives by type, missed boxes by size); the worst
images and a seeded random sample with ground truth and detections drawn; seconds per stage.
See docs/evaluation.md.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from sppnet.evaluation._inputs import check_classes
from sppnet.evaluation._report_assets import FALSE_POSITIVE_COLORS, SCRIPT, SIZE_COLORS, STYLE
from sppnet.evaluation.coco import COCOResult, evaluate_coco
from sppnet.evaluation.errors import (
    FALSE_POSITIVE_TYPES,
    ErrorAnalysis,
    analyze_errors,
    match_detections,
)
from sppnet.evaluation.gallery import pick_gallery, render_image
from sppnet.evaluation.report import results_to_dict
from sppnet.evaluation.svg import pr_curve_svg, stacked_bars_svg
from sppnet.evaluation.voc import VOCResult, evaluate_voc
from sppnet.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["REPORT_FORMAT", "write_report"]

REPORT_FORMAT = "sppnet-report"
_esc = html.escape


def _cell(value: float | None, digits: int = 3) -> str:
    """A numeric table cell with its sort key; NaN/None shows ``n/a`` and sorts last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td data-value="-Infinity">n/a</td>'
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return f'<td data-value="{value}">{text}</td>'


def _plain(value: Any) -> Any:
    """JSON for what ``json`` does not know: numpy scalars and arrays, paths, anything else as
    its ``str``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        out = []
        for key, inner in value.items():
            out += _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
        return out
    return [(prefix, value)]


def _run_section(run_info: Mapping[str, Any], voc: VOCResult, threshold: float | None) -> str:
    rows = []
    for key, value in run_info.items():
        if key == "seconds":
            continue
        if isinstance(value, Mapping):
            text = "<br>".join(
                f"{_esc(k)}: {_esc(json.dumps(v, default=_plain))}" for k, v in _flatten("", value)
            )
        elif isinstance(value, (list, tuple)):
            text = _esc(", ".join(str(v) for v in value))
        else:
            text = _esc(str(value))
        rows.append(f"<tr><td>{_esc(str(key))}</td><td>{text}</td></tr>")
    rows.append(f"<tr><td>images</td><td>{voc.num_images}</td></tr>")
    rows.append(f"<tr><td>IoU threshold</td><td>{voc.iou_threshold:g}</td></tr>")
    shown = "all detections" if threshold is None else f"score &ge; {threshold:g}"
    rows.append(f"<tr><td>score threshold</td><td>{shown}</td></tr>")
    return f'<section id="run"><h2>The run</h2><table class="kv">{"".join(rows)}</table></section>'


def _class_table(voc: VOCResult, coco: COCOResult | None, errors: ErrorAnalysis) -> str:
    heads = [
        ("class", "text"),
        ("VOC07 AP", "num"),
        ("VOC10 AP", "num"),
        ("COCO AP", "num"),
        ("AP50", "num"),
        ("precision", "num"),
        ("recall", "num"),
        ("GT", "num"),
        ("difficult", "num"),
        ("detections", "num"),
        ("TP", "num"),
        ("FP", "num"),
    ]
    head = "".join(
        f'<th data-type="{kind}"{" class=name" if kind == "text" else ""}>{_esc(name)}</th>'
        for name, kind in heads
    )
    ap07, ap10 = voc.ap("voc07"), voc.ap("voc10")
    body = []
    for name, r, e in zip(voc.classes, voc.per_class, errors.per_class, strict=True):
        coco_ap = coco.per_class[name]["AP"] if coco else None
        coco_50 = coco.per_class[name]["AP50"] if coco else None
        body.append(
            f'<tr><td class="name" data-value="{_esc(name)}">{_esc(name)}</td>'
            + _cell(ap07[name])
            + _cell(ap10[name])
            + _cell(coco_ap)
            + _cell(coco_50)
            + _cell(e.precision)
            + _cell(e.recall)
            + _cell(r.num_positives)
            + _cell(r.num_difficult)
            + _cell(r.num_detections + r.num_ignored)
            + _cell(e.tp)
            + _cell(e.fp)
            + "</tr>"
        )
    tp = sum(e.tp for e in errors.per_class)
    fp = sum(e.fp for e in errors.per_class)
    npos = sum(r.num_positives for r in voc.per_class)
    foot = (
        '<tr><td class="name">mean / total</td>'
        + _cell(voc.map("voc07"))
        + _cell(voc.map("voc10"))
        + _cell(coco.metrics["AP"] if coco else None)
        + _cell(coco.metrics["AP50"] if coco else None)
        + _cell(tp / (tp + fp) if tp + fp else math.nan)
        + _cell(tp / npos if npos else math.nan)
        + _cell(npos)
        + _cell(sum(r.num_difficult for r in voc.per_class))
        + _cell(sum(r.num_detections + r.num_ignored for r in voc.per_class))
        + _cell(tp)
        + _cell(fp)
        + "</tr>"
    )
    return (
        '<section id="classes"><h2>Per class</h2><p class="note">Click a heading to sort. '
        "Precision, recall, TP and FP count detections at the score threshold; AP uses them all."
        f'</p><table id="per-class" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody><tfoot>{foot}</tfoot></table></section>"
    )


def _pr_section(voc: VOCResult) -> str:
    panels = []
    for name, r in zip(voc.classes, voc.per_class, strict=True):
        ap = r.ap["voc07"]
        title = f"{name}  AP {ap:.3f}" if not math.isnan(ap) else f"{name}  AP n/a"
        panels.append(pr_curve_svg(r.recall, r.precision, title))
    return (
        '<section id="pr"><h2>Precision / recall per class</h2><p class="note">Grey: the raw '
        "curve; blue: its interpolated envelope (precision at recall r = the best at any recall "
        f'&ge; r). AP is VOC07 11-point.</p><div class="grid">{"".join(panels)}</div></section>'
    )


def _confusion_section(errors: ErrorAnalysis) -> str:
    names = list(errors.classes)
    matrix = errors.confusion
    head = "".join(f"<th>{_esc(n)}</th>" for n in names) + "<th>missed</th>"
    rows = []
    for i, label in enumerate([*names, "background"]):
        total = max(1, int(matrix[i].sum()))
        cells = []
        for j in range(matrix.shape[1]):
            count = int(matrix[i, j])
            share = count / total
            hue = "0, 110, 200" if j == i else "213, 94, 0"
            style = f' style="background: rgba({hue}, {0.85 * share:.2f})"' if count else ""
            cells.append(f'<td{style} title="{share:.0%} of the row">{count}</td>')
        rows.append(f'<tr><th class="name">{_esc(label)}</th>{"".join(cells)}</tr>')
    return (
        '<section id="confusion"><h2>Confusion matrix</h2><p class="note">Detections at the '
        "score threshold. Row: the class of the box a detection lies on (its own class for "
        "true positives, duplicates and localisation errors; the other box's class for "
        "confusions; background for the rest). Column: the detected class; the last column "
        "counts the row class's missed boxes.</p>"
        f'<table class="confusion"><thead><tr><th class="name">box \\ detected</th>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _errors_section(errors: ErrorAnalysis) -> str:
    bars = [
        (name, e.false_positive_types)
        for name, e in zip(errors.classes, errors.per_class, strict=True)
    ]
    bars.append(("all classes", errors.false_positive_totals()))
    rows = []
    for name, e in zip(errors.classes, errors.per_class, strict=True):
        top = ", ".join(f"{_esc(k)} ({v})" for k, v in list(e.confused_with.items())[:3])
        rows.append(
            f'<tr><td class="name">{_esc(name)}</td><td>{e.top_false_positives}</td>'
            + "".join(f"<td>{e.false_positive_types[t]}</td>" for t in FALSE_POSITIVE_TYPES)
            + f'<td>{e.duplicates}</td><td class="name">{top or "-"}</td></tr>'
        )
    head = "".join(f"<th>{t}</th>" for t in FALSE_POSITIVE_TYPES)
    size_rows = [
        (
            name,
            {
                "found": sum(v["num_gt"] - v["missed"] for v in e.missed_by_size.values()),
                "missed": sum(v["missed"] for v in e.missed_by_size.values()),
            },
        )
        for name, e in zip(errors.classes, errors.per_class, strict=True)
    ]
    size_bars = [
        (size, {"found": v["num_gt"] - v["missed"], "missed": v["missed"]})
        for size, v in errors.missed_by_size.items()
    ]
    size_table = "".join(
        f'<tr><td class="name">{size}</td><td>{v["num_gt"]}</td><td>{v["missed"]}</td>'
        f"<td>{(v['missed'] / v['num_gt'] if v['num_gt'] else math.nan):.2f}</td></tr>"
        for size, v in errors.missed_by_size.items()
    )
    return (
        '<section id="errors"><h2>Error analysis</h2><p class="note">Hoiem, Chodpathumwan and '
        "Dai (ECCV 2012), as R-CNN and SPP-net used it: each class's highest-scoring false "
        "positives (as many as the class has boxes) split into <b>localization</b> (right "
        "class, 0.1 &le; IoU &lt; 0.5 with one of its boxes, or a duplicate of a detected one), "
        "<b>confusion</b> (IoU &ge; 0.1 with a box of another class) and <b>background</b>.</p>"
        + stacked_bars_svg(bars, FALSE_POSITIVE_COLORS)
        + '<table id="error-table"><thead><tr><th class="name">class</th><th>top FPs</th>'
        + f'{head}<th>of which duplicates</th><th class="name">confused with</th></tr></thead>'
        + f"<tbody>{''.join(rows)}</tbody></table>"
        + '<h3>Missed ground truth by size</h3><p class="note">Non-difficult boxes no true '
        "positive at the score threshold took, by area (COCO: small &lt; 32&sup2;, medium "
        "&lt; 96&sup2;, large the rest, in original pixels).</p>"
        + stacked_bars_svg(size_bars, SIZE_COLORS)
        + '<table id="size-table"><thead><tr><th class="name">size</th><th>GT</th>'
        + f"<th>missed</th><th>share</th></tr></thead><tbody>{size_table}</tbody></table>"
        + "<h3>Missed ground truth by class</h3>"
        + stacked_bars_svg(size_rows, SIZE_COLORS)
        + "</section>"
    )


def _gallery_section(title: str, anchor: str, figures: Sequence[Mapping[str, Any]]) -> str:
    items = []
    for f in figures:
        items.append(
            f'<figure><img src="{_esc(f["file"])}" width="{f["width"]}" height="{f["height"]}" '
            f'alt="{_esc(f["image_id"])}"><figcaption>{_esc(f["image_id"])}: {f["missed"]} '
            f"missed, {f['false_positives']} false positive(s), {f['true_positives']} true "
            "positive(s)</figcaption></figure>"
        )
    empty = '<p class="note">No images.</p>' if not items else ""
    return (
        f'<section id="{anchor}"><h2>{_esc(title)}</h2><p class="note"><span class="legend-gt">'
        'ground truth</span> dashed, tag below; <span class="legend-det">detections</span> '
        f'solid, coloured by class, tag above.</p>{empty}<div class="gallery">{"".join(items)}'
        "</div></section>"
    )


def _seconds_section(seconds: Mapping[str, Any]) -> str:
    numbers = [
        (k, float(v))
        for k, v in _flatten("", seconds)
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    ]
    if not numbers:
        return '<section id="seconds"><h2>Seconds per stage</h2><p>not given</p></section>'
    bars = [(k, {"seconds": v}) for k, v in numbers]
    rows = "".join(f'<tr><td class="name">{_esc(k)}</td><td>{v:.3f}</td></tr>' for k, v in numbers)
    return (
        '<section id="seconds"><h2>Seconds per stage</h2>'
        + stacked_bars_svg(bars, {"seconds": "#1f6fd1"}, normalize=False, unit=" s")
        + f'<table><thead><tr><th class="name">stage</th><th>seconds</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _curves(voc: VOCResult, limit: int = 200) -> dict[str, Any]:
    out = {}
    for name, r in zip(voc.classes, voc.per_class, strict=True):
        keep = np.unique(np.linspace(0, max(r.recall.size - 1, 0), min(limit, r.recall.size)))
        keep = keep.round().astype(np.int64)
        out[name] = {
            "recall": [None if math.isnan(v) else float(v) for v in r.recall[keep]],
            "precision": [float(v) for v in r.precision[keep]],
        }
    return out


def write_report(
    out_dir: str | os.PathLike[str],
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    classes: Sequence[str],
    image_loader: Callable[[int], Tensor],
    run_info: Mapping[str, Any],
    *,
    score_threshold: float | None = 0.5,
    iou_threshold: float = 0.5,
    voc: VOCResult | None = None,
    coco: COCOResult | None = None,
    compute_coco: bool = True,
    num_worst: int = 8,
    num_random: int = 8,
    seed: int = 0,
) -> Path:
    """Write the report to ``out_dir`` (created): ``index.html``, ``report.json``, ``images/``.

    Args:
        out_dir: the report's folder; files of an earlier report there are overwritten.
        predictions, targets: one dict per image, as :func:`~sppnet.evaluation.evaluate_voc`
            takes them; ``targets[i]["image_id"]`` (optional) names image ``i``.
        classes: class names without background.
        image_loader: ``(index) -> Tensor[3, H, W] uint8`` RGB; called only for the gallery's
            ``num_worst + num_random`` images.
        run_info: shown in "the run": e.g. ``model``, ``data``, ``scales``, ``settings`` (a
            dict), and ``seconds`` (a dict of stage -> seconds, nested dicts allowed), drawn in
            "seconds per stage".
        score_threshold: detections scoring >= this count for precision, recall, the confusion
            matrix, missed boxes and the gallery (None: all of them).
        iou_threshold: VOC matching threshold.
        voc, coco: results already computed on the same input (skips recomputing them).
        compute_coco: run :func:`~sppnet.evaluation.evaluate_coco` when ``coco`` is not given.
        num_worst, num_random, seed: the gallery (:func:`sppnet.evaluation.gallery.pick_gallery`).

    Returns:
        The path of ``index.html``.
    """
    classes = check_classes(classes, "write_report")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if voc is None:
        voc = evaluate_voc(predictions, targets, classes, iou_threshold=iou_threshold)
    if coco is None and compute_coco:
        coco = evaluate_coco(predictions, targets, classes)
    matched = match_detections(predictions, targets, classes, iou_threshold=iou_threshold)
    errors = analyze_errors(matched, score_threshold)
    worst, sample = pick_gallery(errors, num_worst, num_random, seed)
    figures: dict[str, list[dict[str, Any]]] = {"worst": [], "random": []}
    for group, indices in (("worst", worst), ("random", sample)):
        for i in indices:
            image_id = str(targets[i].get("image_id", i))
            data, width, height = render_image(
                image_loader(i), predictions[i], targets[i], classes, score_threshold
            )
            name = f"images/{group}-{i:05d}.jpg"
            atomic_write_bytes(out / name, data, fsync=False)
            figures[group].append(
                {
                    "index": i,
                    "image_id": image_id,
                    "file": name,
                    "width": width,
                    "height": height,
                    "missed": int(errors.image_missed[i]),
                    "false_positives": int(errors.image_false_positives[i]),
                    "true_positives": int(errors.image_true_positives[i]),
                }
            )
    seconds = run_info.get("seconds", {})
    doc = {
        "format": REPORT_FORMAT,
        "version": 1,
        "run": dict(run_info),
        "results": results_to_dict(voc, coco),
        "errors": errors.to_dict(),
        "pr_curves": _curves(voc),
        "gallery": figures,
    }
    atomic_write_json(out / "report.json", doc, indent=1, default=_plain)
    summary = f"<span>VOC07 mAP <b>{voc.map('voc07'):.3f}</b></span>"
    summary += f"<span>VOC10 mAP <b>{voc.map('voc10'):.3f}</b></span>"
    if coco is not None:
        summary += f"<span>COCO AP <b>{coco.metrics['AP']:.3f}</b></span>"
    named = run_info.get("model") or run_info.get("results") or "SPP-net detector"
    title = f"Evaluation report: {named}"
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("run", "run"),
            ("classes", "per class"),
            ("pr", "PR curves"),
            ("confusion", "confusion"),
            ("errors", "errors"),
            ("worst", "worst images"),
            ("random", "random images"),
            ("seconds", "seconds"),
        )
    )
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{STYLE}</style></head><body><header><h1>{_esc(title)}</h1>"
        f'<p class="summary">{summary}</p><nav>{nav}</nav>'
        '<p class="note">Drawn from <a href="report.json">report.json</a>.</p></header>'
        + _run_section(run_info, voc, score_threshold)
        + _class_table(voc, coco, errors)
        + _pr_section(voc)
        + _confusion_section(errors)
        + _errors_section(errors)
        + _gallery_section(
            "Worst images (most missed + false positives)", "worst", figures["worst"]
        )
        + _gallery_section(f"Random sample (seed {seed})", "random", figures["random"])
        + _seconds_section(seconds if isinstance(seconds, Mapping) else {})
        + f"<script>{SCRIPT}</script></body></html>"
    )
    index = out / "index.html"
    atomic_write_text(index, page)
    return index
