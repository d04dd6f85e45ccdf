"""The speed table of ``sppnet bench detect``: SPP-net vs R-CNN, stage by stage (see
:mod:`sppnet.benchmarks.detect`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from torch import Tensor

from sppnet.benchmarks._timing import synchronize
from sppnet.benchmarks.detect_settings import (
    BenchSettings,
    paper_network,
    settings_median,
    with_heads,
    with_scales,
)
from sppnet.models.detector import SPPNetDetector
from sppnet.models.rcnn import RCNNDetector
from sppnet.models.svd import count_linear_macs

__all__ = ["speed_table"]


# ----------------------------------------------------------------------------- speed table
def _row(conv: float, pool: float, fc: float) -> dict[str, float]:
    return {
        "conv_s": conv,
        "pool_s": pool,
        "fc_s": fc,
        "pool_fc_s": pool + fc,
        "total_s": conv + pool + fc,
    }


def _rcnn_conv(rcnn: RCNNDetector, image: Tensor, windows: Tensor) -> tuple[float, list[Tensor]]:
    """Seconds of R-CNN's conv stage (normalise, warp, trunk) for these windows, and the maps."""
    synchronize()
    start = time.perf_counter()
    maps = list(rcnn.conv_windows(rcnn.normalize(image), windows))
    synchronize()
    return time.perf_counter() - start, maps


def _seconds(fn: Callable[[], Any]) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def _time_convs(
    detectors: dict[str, SPPNetDetector],
    rcnn: RCNNDetector,
    image: Tensor,
    windows: Tensor,
    settings: BenchSettings,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The conv stage of every method, measured in interleaved rounds.

    Each round times SPP-net's conv once per detector and R-CNN's conv on ``rcnn_windows[0]``
    and ``rcnn_windows[1]`` windows, so a change of the machine's load hits all methods alike;
    medians over ``repeats`` rounds. R-CNN's time is per window at the larger subset, times
    ``windows``.
    """
    small, large = settings.rcnn_windows
    for _ in range(settings.warmup):
        for detector in detectors.values():
            detector.compute_features([image])
        _rcnn_conv(rcnn, image, windows[: min(small, rcnn.chunk_size)])
    times: dict[str, list[float]] = {key: [] for key in detectors}
    per_window: dict[int, list[float]] = {small: [], large: []}
    for _ in range(settings.repeats):
        for key, detector in detectors.items():
            times[key].append(_seconds(lambda d=detector: d.compute_features([image])))
        for n in (small, large):
            per_window[n].append(_rcnn_conv(rcnn, image, windows[:n])[0] / n)
    conv = {key: statistics.median(t) for key, t in times.items()}
    per_small = statistics.median(per_window[small])
    per_large = statistics.median(per_window[large])
    conv["rcnn"] = per_large * settings.windows
    linearity = {
        "windows": [small, large],
        "conv_s_per_window": [per_small, per_large],
        "ratio": per_large / per_small,
    }
    return conv, linearity


def speed_table(
    image: Tensor, windows: Tensor, settings: BenchSettings, log: Callable[[str], None]
) -> dict[str, Any]:
    """The R-CNN / SPP 1 scale / SPP 5 scales table (see the module docstring)."""
    detector = paper_network(settings)
    detectors = {"spp_1": detector, "spp_5": with_scales(detector, settings.scales5)}
    rcnn = RCNNDetector(
        detector, input_size=224, context_padding=16, chunk_size=settings.rcnn_chunk
    )
    small, large = settings.rcnn_windows
    log(
        f"speed: conv stages, {settings.repeats} interleaved rounds (SPP at {settings.scale} and "
        f"at {list(settings.scales5)}, R-CNN on {small} and {large} windows) ..."
    )
    conv, linearity = _time_convs(detectors, rcnn, image, windows, settings)
    log("speed: pooling ...")
    pool: dict[str, float] = {}
    pooled = None
    for key, model in detectors.items():
        features = model.compute_features([image])
        pool[key] = settings_median(
            lambda m=model, f=features: m.pool_windows(f, [windows]), settings
        )
        if key == "spp_1":
            pooled = model.pool_windows(features, [windows])
    _, maps = _rcnn_conv(rcnn, image, windows[:large])
    pool_large = settings_median(lambda: [rcnn.pool(m) for m in maps], settings)
    pool["rcnn"] = pool_large * settings.windows / large
    # The fc layers and heads see ``windows`` pooled vectors of the same length in all three
    # methods (R-CNN batches them as well as SPP-net does): their cost is timed once.
    log(f"speed: fc layers on {settings.windows} windows, and their SVD {list(settings.svd_ranks)}")
    svd = with_heads(detector, settings.svd_ranks)
    fc = settings_median(lambda: detector.score_windows(pooled), settings)
    fc_svd = settings_median(lambda: svd.score_windows(pooled), settings)
    rows = {k: _row(conv[k], pool[k], fc) for k in ("rcnn", "spp_1", "spp_5")}
    svd_rows = {k: _row(conv[k], pool[k], fc_svd) for k in ("rcnn", "spp_1", "spp_5")}
    return {
        "network": {
            "backbone": settings.backbone,
            "levels": list(settings.levels),
            "fc_dims": list(settings.fc_dims),
            "pooled_features": detector.pooled_features,
            "fc_macs_per_window": count_linear_macs(detector.box_head),
            "fc_macs_per_window_svd": count_linear_macs(svd.box_head),
            "scales_1": [settings.scale],
            "scales_5": list(settings.scales5),
        },
        "rows": rows,
        "ratios": _ratios(rows),
        "svd_ranks": list(settings.svd_ranks),
        "svd_rows": svd_rows,
        "svd_ratios": _ratios(svd_rows),
        "rcnn_linearity": linearity,
    }


def _ratios(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    r = rows["rcnn"]
    return {
        "conv_spp_1": r["conv_s"] / rows["spp_1"]["conv_s"],
        "total_spp_1": r["total_s"] / rows["spp_1"]["total_s"],
        "conv_spp_5": r["conv_s"] / rows["spp_5"]["conv_s"],
        "total_spp_5": r["total_s"] / rows["spp_5"]["total_s"],
    }
