"""SPP-net vs R-CNN detection speed, and the detector's latency beside torchvision's Faster R-CNN.

Two tables, every figure measured in one process, side by side, on one real photograph resized to
500 x 375 (PASCAL VOC's typical size) with ``windows`` proposals (2,000 as in the paper):

**Speed** (the paper's table 10, "ZF-5 in R-CNN mode" vs SPP-net): per image, the time of the conv
stage, of the pooling + fc stage (SPP over the windows, fc6, fc7, scoring head, box regressor) and
their sum, for

- *R-CNN*: every window cropped with 16 px of context, warped to 224 x 224 and run through the
  whole network (:class:`~sppnet.models.rcnn.RCNNDetector`). At 2,000 windows this takes many
  minutes on a CPU, so the conv stage is timed on two subsets of ``rcnn_windows`` windows and
  scaled linearly to ``windows`` (its cost per window is independent of the window; the
  per-window times at the two sizes are reported to show the scaling is linear);
- *SPP 1 scale*: conv once at shorter side 688, then every window RoI-SPP-pooled from that map;
- *SPP 5 scales*: conv at 480, 576, 688, 864 and 1200, each window pooled at one of them.

The conv stages of the three methods are timed in interleaved rounds (one SPP-net pass per
scale set and both R-CNN subsets per round), so that a change in the load of a shared machine
hits them alike. The fc layers and heads see ``windows`` pooled vectors of the same length in
every method (R-CNN batches them as well as SPP-net does), so they are timed once. Ratios are
R-CNN's time over SPP-net's. All three use the same network with the same weights
(random: speed does not depend on the weights). The table is repeated with fc6/fc7 replaced by
their truncated SVD (:mod:`sppnet.models.svd`), which changes only the pooling + fc column.

**Latency**: the whole detector, proposals excluded (image in, detections out, NMS included), at
``windows`` windows per image, beside torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` and
``fasterrcnn_resnet50_fpn`` (``weights=None, weights_backbone=None``, their default settings)
on the same image, in the same process. SPP-net variants: the paper's network, and the demo
network (or a trained detector given by the caller) with truncated SVD and fewer windows.

Times are medians over ``repeats`` runs after one warm-up run. Selective search is timed
separately (OpenCV's fast mode). When it yields fewer than ``windows`` boxes the rest are copies of
its boxes jittered in position and size (seeded), so that every method scores the same
``windows`` windows; the count of each kind is reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sppnet.benchmarks._timing import machine_info, median_seconds
from sppnet.benchmarks.detect_latency import evaluate_variants, latency_table
from sppnet.benchmarks.detect_settings import (
    QUICK,
    SCHEMA,
    BenchSettings,
    Variant,
    benchmark_image,
    benchmark_windows,
    demo_network,
    settings_dict,
    settings_with,
    with_heads,
)
from sppnet.benchmarks.detect_speed import speed_table
from sppnet.benchmarks.onnx_detect import format_onnx_row, time_onnx_detector
from sppnet.models.detector import SPPNetDetector

__all__ = [
    "QUICK",
    "SCHEMA",
    "BenchSettings",
    "Variant",
    "benchmark_image",
    "benchmark_windows",
    "evaluate_variants",
    "format_report",
    "median_seconds",
    "run_benchmark",
    "settings_with",
    "with_heads",
]


# ----------------------------------------------------------------------------- the whole run
#: The tables :func:`run_benchmark` can measure.
TABLES = ("speed", "latency", "onnx")


@torch.inference_mode()
def run_benchmark(
    settings: BenchSettings = BenchSettings(),
    detector: SPPNetDetector | None = None,
    tables: Sequence[str] = TABLES,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the tables named in ``tables`` and return a JSON-ready dict (keys in
    docs/speed.md): ``schema``, ``settings``, ``machine_start``, ``machine_end``,
    ``selective_search``, ``speed``, ``latency``.

    Args:
        settings: what to measure (:class:`BenchSettings`, :data:`QUICK`).
        detector: a trained detector for the latency table's small-network rows (default: the
            ``settings.demo_preset`` network with random weights).
        tables: any of ``"speed"``, ``"latency"`` and ``"onnx"`` (the latency of the demo
            network, or ``detector``, exported to ONNX and run in onnxruntime beside PyTorch; CPU
            only: :func:`~sppnet.benchmarks.onnx_detect.time_onnx_detector`).
        log: progress messages.
    """
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}; known: {list(TABLES)}")
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "settings": settings_dict(settings),
        "machine_start": machine_info(),
    }
    image = benchmark_image(settings.image_size)
    windows, ss_info = benchmark_windows(image, settings.windows, settings.seed)
    result["selective_search"] = ss_info
    image, windows = image.to(settings.device), windows.to(settings.device)
    if detector is not None:
        detector = detector.to(settings.device)
    speed = speed_table(image, windows, settings, log) if "speed" in tables else None
    result["speed"] = speed
    result["latency"] = (
        latency_table(image, windows, settings, log, detector, speed)
        if "latency" in tables
        else None
    )
    result["onnx"] = None
    if "onnx" in tables:
        log("ONNX export and onnxruntime vs PyTorch ...")
        network = detector if detector is not None else demo_network(settings)
        with torch.inference_mode(False):  # the exporter traces the model
            result["onnx"] = time_onnx_detector(
                copy.deepcopy(network).cpu(),
                image.cpu(),
                windows.cpu(),
                threads=torch.get_num_threads(),
                repeats=settings.repeats,
            )
    result["machine_end"] = machine_info()
    return result


# ----------------------------------------------------------------------------- printing
def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 100 else f"{seconds:.1f}"


def format_report(result: dict[str, Any]) -> str:
    """The tables as plain text."""
    lines = []
    s = result["settings"]
    m0, m1 = result["machine_start"], result["machine_end"]
    lines.append(
        f"image {s['image_size'][1]}x{s['image_size'][0]}, {s['windows']} windows; torch "
        f"{m0['torch']}, {m0['torch_threads']} threads, OMP_WAIT_POLICY={m0['omp_wait_policy']}, "
        f"load average {m0['load_avg_1m']:.1f} -> {m1['load_avg_1m']:.1f}"
    )
    ss = result["selective_search"]
    lines.append(
        f"selective search (fast, separate): {ss['seconds']:.2f} s, {ss['selective_search']} "
        f"windows (+{ss['jittered']} jittered copies)"
    )
    speed = result.get("speed")
    if speed:
        net = speed["network"]
        lines.append("")
        lines.append(
            f"Speed per image ({net['backbone']}, levels {net['levels']}, fc {net['fc_dims']}; "
            f"R-CNN conv timed on {speed['rcnn_linearity']['windows']} windows, scaled linearly)"
        )
        for title, rows, ratios in (
            ("fc6/fc7 as trained", speed["rows"], speed["ratios"]),
            (f"fc6/fc7 truncated SVD {speed['svd_ranks']}", speed["svd_rows"], speed["svd_ratios"]),
        ):
            lines.append(f"  [{title}]")
            lines.append(f"  {'method':<14}{'conv s':>10}{'pool+fc s':>12}{'total s':>10}")
            for key, label in (
                ("rcnn", "R-CNN"),
                ("spp_1", "SPP 1 scale"),
                ("spp_5", "SPP 5 scales"),
            ):
                r = rows[key]
                lines.append(
                    f"  {label:<14}{_fmt_s(r['conv_s']):>10}{_fmt_s(r['pool_fc_s']):>12}"
                    f"{_fmt_s(r['total_s']):>10}"
                )
            lines.append(
                f"  speed-up vs R-CNN: conv {ratios['conv_spp_1']:.0f}x (1 scale), "
                f"{ratios['conv_spp_5']:.0f}x (5 scales); overall {ratios['total_spp_1']:.0f}x "
                f"(1 scale), {ratios['total_spp_5']:.0f}x (5 scales)"
            )
        lin = speed["rcnn_linearity"]
        lines.append(
            f"  R-CNN conv per window: {lin['conv_s_per_window'][0] * 1e3:.1f} ms at "
            f"{lin['windows'][0]} windows, {lin['conv_s_per_window'][1] * 1e3:.1f} ms at "
            f"{lin['windows'][1]} (ratio {lin['ratio']:.2f})"
        )
    latency = result.get("latency")
    if latency:
        lines.append("")
        lines.append(
            f"Latency per image, proposals excluded (target <= {latency['target_s']} s; "
            f"{'trained' if latency['trained_detector'] else 'random-weight'} demo network)"
        )
        lines.append(f"  {'model':<44}{'windows':>8}{'seconds':>9}{'vs tv0':>8}{'mAP07':>7}")
        for row in latency["rows"]:
            ratio = row.get("vs_first_torchvision")
            map07 = row.get("map_voc07")
            lines.append(
                f"  {row['name']:<44}{row.get('windows') or '':>8}{row['seconds']:>9.3f}"
                f"{'' if ratio is None else f'{ratio:.2f}':>8}"
                f"{'' if map07 is None else f'{map07:.3f}':>7}"
            )
    if result.get("onnx"):
        lines.append("")
        lines.append(format_onnx_row(result["onnx"]))
    maps = result.get("map")
    if maps:
        lines.append("")
        lines.append(f"mAP of the variants on {maps['data']} ({maps['split']})")
        lines.append(f"  {'variant':<44}{'windows':>8}{'scales':>8}{'VOC07':>8}{'VOC10':>8}")
        for v in maps["variants"]:
            lines.append(
                f"  {v['name']:<44}{v['windows']:>8}{','.join(map(str, v['scales'])):>8}"
                f"{v['map_voc07']:>8.3f}{v['map_voc10']:>8.3f}"
            )
    return "\n".join(lines)
