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
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sppnet.models.detector import SPPNetDetector
from sppnet.models.detector_config import PAPER_SCALES, DetectorConfig, preset, scaled_scales
from sppnet.models.fuse import fuse_for_inference
from sppnet.models.rcnn import RCNNDetector
from sppnet.models.svd import compress_fc, count_linear_macs

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
    "with_heads",
]

#: Identifies the layout of the JSON document :func:`run_benchmark` returns.
SCHEMA = "sppnet.bench.detect/1"

TORCHVISION_MODELS = ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn")


@dataclass(frozen=True)
class Variant:
    """One way of running a detector for the latency table (and the mAP table).

    Attributes:
        name: label in the tables.
        svd_ranks: ``(rank6, rank7)`` for :func:`~sppnet.models.svd.compress_fc` (either may be
            None: that layer is left as it is), or None for no SVD.
        windows: proposals per image (the first ``windows`` of the ranked proposals).
        scales: test scales (shorter sides) instead of the detector's, or None.
        fused: run :func:`~sppnet.models.fuse.fuse_for_inference`'s copy (batch norms folded
            into the convolutions, channels-last trunk).
    """

    name: str
    svd_ranks: tuple[int | None, int | None] | None
    windows: int
    scales: tuple[int, ...] | None = None
    fused: bool = False

    def build(self, detector: SPPNetDetector) -> SPPNetDetector:
        """This variant of ``detector`` (sharing its trunk unless ``fused``)."""
        model = with_heads(detector, self.svd_ranks)
        model = model if self.scales is None else _with_scales(model, self.scales)
        return fuse_for_inference(model) if self.fused else model


@dataclass(frozen=True)
class BenchSettings:
    """What :func:`run_benchmark` measures. The defaults are the paper's setting.

    Attributes:
        image_size: (height, width) of the benchmark image.
        windows: windows per image.
        rcnn_windows: the two subset sizes R-CNN's conv stage is timed on, in every round.
        rcnn_chunk: windows per R-CNN trunk call.
        repeats: timed runs per measurement (the median is reported).
        warmup: untimed runs before each measurement.
        backbone, levels, fc_dims, scale, scales5: the speed table's network (the paper's ZF-5,
            (6, 3, 2, 1), 4096/4096) and its one and five scales.
        svd_ranks: fc6/fc7 ranks of the speed table's SVD rows and of the paper network's latency
            row.
        demo_preset: the :func:`~sppnet.models.detector_config.preset` of the latency table's
            small network (ignored when a trained detector is passed to :func:`run_benchmark`).
        demo_variants: the latency (and mAP) variants of that network.
        torchvision: the torchvision detection models to time beside it.
        latency_target_s: the target the latency table is compared with (seconds per image).
        seed: seed of the random weights and of the jittered windows.
        device: torch device the networks run on (``"cpu"``, ``"cuda"``, ``"cuda:1"``);
            selective search runs on the CPU.
    """

    image_size: tuple[int, int] = (375, 500)
    windows: int = 2000
    rcnn_windows: tuple[int, int] = (32, 96)
    rcnn_chunk: int = 32
    repeats: int = 3
    warmup: int = 1
    backbone: str = "zf5"
    levels: tuple[int, ...] = (6, 3, 2, 1)
    fc_dims: tuple[int, ...] = (4096, 4096)
    scale: int = 688
    scales5: tuple[int, ...] = PAPER_SCALES
    svd_ranks: tuple[int, int] = (256, 256)
    demo_preset: str = "demo"
    demo_variants: tuple[Variant, ...] = (
        Variant("demo", None, 2000),
        Variant("demo, BN folded", None, 2000, fused=True),
        Variant("demo + SVD fc6 256", (256, None), 2000),
        Variant("demo + SVD fc6 128", (128, None), 2000),
        Variant("demo + SVD fc6 64", (64, None), 2000),
        Variant("demo, 1000 windows", None, 1000),
        Variant("demo, 500 windows", None, 500),
        Variant("demo + SVD fc6 128, scale 400", (128, None), 2000, (400,)),
    )
    torchvision: tuple[str, ...] = TORCHVISION_MODELS
    latency_target_s: float = 0.5
    seed: int = 0
    device: str = "cpu"


#: A sub-minute version for tests and smoke runs: a small image, 200 windows, small fc layers.
QUICK = BenchSettings(
    image_size=(150, 200),
    windows=200,
    rcnn_windows=(2, 4),
    rcnn_chunk=2,
    repeats=1,
    warmup=0,
    fc_dims=(256, 256),
    scale=160,
    scales5=scaled_scales(160),
    svd_ranks=(32, 32),
    demo_variants=(
        Variant("demo", None, 200),
        Variant("demo, BN folded", None, 200, fused=True),
        Variant("demo + SVD 32/32", (32, 32), 200),
        Variant("demo, 100 windows", None, 100),
    ),
    torchvision=("fasterrcnn_mobilenet_v3_large_fpn",),
)


# ----------------------------------------------------------------------------- inputs
def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        times.append(_seconds(fn))
    return statistics.median(times)


def _synchronize() -> None:
    """Wait for queued GPU work, so that wall-clock times cover it (a no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def benchmark_image(size: tuple[int, int] = (375, 500)) -> Tensor:
    """A real photograph (scikit-image's ``astronaut``) centre-cropped to the aspect of ``size``
    and resized to it: Tensor[3, H, W] uint8."""
    from skimage import data as skimage_data

    height, width = size
    photo = torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1)
    ph, pw = photo.shape[-2:]
    if ph * width > pw * height:  # too tall: crop rows
        keep = round(pw * height / width)
        top = (ph - keep) // 2
        photo = photo[:, top : top + keep]
    else:
        keep = round(ph * width / height)
        left = (pw - keep) // 2
        photo = photo[:, :, left : left + keep]
    resized = F.interpolate(
        photo[None].float(), size=(height, width), mode="bilinear", antialias=True
    )[0]
    return resized.round().clamp(0, 255).to(torch.uint8)


def benchmark_windows(image: Tensor, count: int, seed: int = 0) -> tuple[Tensor, dict[str, Any]]:
    """``count`` proposal windows for ``image``: selective search (fast mode, timed), completed
    with jittered copies of its boxes when it finds fewer.

    Returns:
        ``(windows Tensor[count, 4] float32, info)`` with ``info`` keys ``seconds`` (selective
        search), ``selective_search`` (boxes it gave, at most ``count`` used) and ``jittered``.
    """
    from sppnet.proposals.selective_search import selective_search

    start = time.perf_counter()
    found = selective_search(image, mode="fast", shorter_side=None, max_proposals=None)
    seconds = time.perf_counter() - start
    if found.shape[0] == 0:
        raise ValueError("selective search found no window on the benchmark image")
    real = found[:count]
    extra = count - real.shape[0]
    windows = real
    if extra > 0:
        g = torch.Generator().manual_seed(seed)
        height, width = image.shape[-2:]
        base = real[torch.randint(real.shape[0], (extra,), generator=g)]
        size = base[:, 2:] - base[:, :2]
        centre = 0.5 * (base[:, :2] + base[:, 2:]) + (torch.rand(extra, 2, generator=g) - 0.5) * (
            0.3 * size
        )
        size = size * torch.exp((torch.rand(extra, 2, generator=g) - 0.5) * 0.6)
        limit = torch.tensor([width, height], dtype=torch.float32)
        lo = (centre - size / 2).clamp(min=0)
        hi = torch.minimum(centre + size / 2, limit)
        hi = torch.maximum(hi, torch.minimum(lo + 8, limit))
        lo = torch.minimum(lo, hi - 8)
        windows = torch.cat([real, torch.cat([lo, hi], dim=1)])
    info = {"seconds": seconds, "selective_search": int(real.shape[0]), "jittered": max(0, extra)}
    return windows.contiguous(), info


# ----------------------------------------------------------------------------- models
def with_heads(
    detector: SPPNetDetector, svd_ranks: tuple[int | None, int | None] | None
) -> SPPNetDetector:
    """A copy of ``detector`` that shares its trunk, with fc6/fc7 compressed by truncated SVD
    (or unchanged for ``svd_ranks=None``)."""
    variant = copy.deepcopy(detector, memo={id(detector.backbone): detector.backbone})
    if svd_ranks is not None:
        compress_fc(variant, *svd_ranks)
    return variant.eval()


def _with_scales(detector: SPPNetDetector, scales: Sequence[int]) -> SPPNetDetector:
    variant = copy.deepcopy(detector, memo={id(detector.backbone): detector.backbone})
    variant.config = variant.config.replace(scales=tuple(scales))
    variant.transform.scales = tuple(scales)
    return variant.eval()


def paper_network(settings: BenchSettings, num_classes: int = 20) -> SPPNetDetector:
    """The speed table's network: the paper's preset with random weights (eval mode)."""
    torch.manual_seed(settings.seed)
    config = preset(
        "paper",
        backbone=settings.backbone,
        backbone_weights=None,
        levels=settings.levels,
        fc_dims=settings.fc_dims,
        scales=(settings.scale,),
        num_classes=num_classes,
    )
    return SPPNetDetector(config).eval().to(settings.device)


def demo_network(settings: BenchSettings) -> SPPNetDetector:
    """The latency table's small network with random weights (timing only)."""
    torch.manual_seed(settings.seed)
    network = SPPNetDetector(preset(settings.demo_preset, backbone_weights=None))
    return network.eval().to(settings.device)


# ----------------------------------------------------------------------------- speed table
def _row(conv: float, pool: float, fc: float) -> dict[str, float]:
    return {
        "conv_s": conv,
        "pool_s": pool,
        "fc_s": fc,
        "pool_fc_s": pool + fc,
        "total_s": conv + pool + fc,
    }


def _median(fn: Callable[[], Any], settings: BenchSettings) -> float:
    return median_seconds(fn, settings.repeats, settings.warmup)


def _rcnn_conv(rcnn: RCNNDetector, image: Tensor, windows: Tensor) -> tuple[float, list[Tensor]]:
    """Seconds of R-CNN's conv stage (normalise, warp, trunk) for these windows, and the maps."""
    _synchronize()
    start = time.perf_counter()
    maps = list(rcnn.conv_windows(rcnn.normalize(image), windows))
    _synchronize()
    return time.perf_counter() - start, maps


def _seconds(fn: Callable[[], Any]) -> float:
    _synchronize()
    start = time.perf_counter()
    fn()
    _synchronize()
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
    detectors = {"spp_1": detector, "spp_5": _with_scales(detector, settings.scales5)}
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
        pool[key] = _median(lambda m=model, f=features: m.pool_windows(f, [windows]), settings)
        if key == "spp_1":
            pooled = model.pool_windows(features, [windows])
    _, maps = _rcnn_conv(rcnn, image, windows[:large])
    pool_large = _median(lambda: [rcnn.pool(m) for m in maps], settings)
    pool["rcnn"] = pool_large * settings.windows / large
    # The fc layers and heads see ``windows`` pooled vectors of the same length in all three
    # methods (R-CNN batches them as well as SPP-net does): their cost is timed once.
    log(f"speed: fc layers on {settings.windows} windows, and their SVD {list(settings.svd_ranks)}")
    svd = with_heads(detector, settings.svd_ranks)
    fc = _median(lambda: detector.score_windows(pooled), settings)
    fc_svd = _median(lambda: svd.score_windows(pooled), settings)
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


# ----------------------------------------------------------------------------- latency table
def _torchvision_latency(name: str, image: Tensor, settings: BenchSettings) -> float:
    import torchvision

    builder = getattr(torchvision.models.detection, name)
    model = builder(weights=None, weights_backbone=None).eval().to(settings.device)
    x = image.float() / 255
    return _median(lambda: model([x]), settings)


def latency_table(
    image: Tensor,
    windows: Tensor,
    settings: BenchSettings,
    log: Callable[[str], None],
    detector: SPPNetDetector | None = None,
    speed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seconds per image, proposals excluded: torchvision's models and SPP-net variants.

    The paper network's rows come from the speed table when it was measured in the same run
    (``speed``: conv + pool + fc of SPP 1 scale, without NMS, which takes milliseconds);
    otherwise they are timed here like the other rows (the whole forward).
    """
    rows = []
    for name in settings.torchvision:
        log(f"latency: torchvision {name} ...")
        seconds = _torchvision_latency(name, image, settings)
        rows.append(
            {"name": f"torchvision {name}", "kind": "torchvision", "seconds": seconds,
             "measured": "forward"}
        )  # fmt: skip
    paper = paper_network(settings)
    svd_name = f"paper + SVD {ranks_str(settings.svd_ranks)}"
    if speed is not None:
        for name, key, macs in (
            ("paper", "rows", "fc_macs_per_window"),
            (svd_name, "svd_rows", "fc_macs_per_window_svd"),
        ):
            row = _spp_row(
                name, paper, settings.windows, speed[key]["spp_1"]["total_s"], "speed_table_stages"
            )
            row["fc_macs_per_window"] = speed["network"][macs]
            rows.append(row)
    else:
        log("latency: SPP-net, the paper's network ...")
        for name, ranks in (("paper", None), (svd_name, settings.svd_ranks)):
            model = with_heads(paper, ranks)
            seconds = _median(lambda m=model: m([image], [windows]), settings)
            rows.append(_spp_row(name, model, settings.windows, seconds, "forward"))
    small = detector if detector is not None else demo_network(settings)
    for variant in settings.demo_variants:
        log(f"latency: SPP-net {variant.name} ...")
        model = variant.build(small)
        subset = windows[: variant.windows]
        seconds = _median(lambda m=model, w=subset: m([image], [w]), settings)
        rows.append(_spp_row(variant.name, model, variant.windows, seconds, "forward"))
    reference = next((r["seconds"] for r in rows if r["kind"] == "torchvision"), None)
    for row in rows:
        row["vs_first_torchvision"] = None if reference is None else row["seconds"] / reference
        row["meets_target"] = row["seconds"] <= settings.latency_target_s
    return {
        "target_s": settings.latency_target_s,
        "trained_detector": detector is not None,
        "rows": rows,
    }


def ranks_str(ranks: tuple[int, int]) -> str:
    return f"{ranks[0]}/{ranks[1]}"


def _spp_row(
    name: str, model: SPPNetDetector, windows: int, seconds: float, measured: str
) -> dict[str, Any]:
    config: DetectorConfig = model.config
    return {
        "name": name,
        "kind": "sppnet",
        "seconds": seconds,
        "measured": measured,
        "windows": windows,
        "backbone": config.backbone,
        "scales": list(config.scales),
        "fc_macs_per_window": count_linear_macs(model.box_head),
    }


# ----------------------------------------------------------------------------- mAP of variants
@torch.inference_mode()
def evaluate_variants(
    detector: SPPNetDetector,
    data: Any,
    classes: Sequence[str],
    variants: Sequence[Variant],
    log: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """VOC07 and VOC10 mAP of each variant of a trained detector on a dataset.

    The conv features of each image are computed once per distinct set of scales and shared by
    the variants that use it.

    Args:
        detector: the trained detector.
        data: a :class:`~sppnet.engine.detection.DetectionSet` (``len``, ``image(i)``,
            ``proposals[i]`` ranked, ``targets[i]``).
        classes: class names, ``classes[k - 1]`` for label ``k``.
        variants: what to evaluate.

    Returns:
        One dict per variant: ``name``, ``svd_ranks``, ``windows``, ``map_voc07``, ``map_voc10``.
    """
    from sppnet.evaluation import evaluate_voc

    models = [v.build(detector) for v in variants]
    predictions: list[list[dict[str, Tensor]]] = [[] for _ in variants]
    for i in range(len(data)):
        features: dict[tuple[tuple[int, ...], bool], Any] = {}
        for model, variant, preds in zip(models, variants, predictions, strict=True):
            key = (tuple(model.config.scales), variant.fused)
            if key not in features:
                features[key] = model.compute_features([data.image(i)])
            boxes = data.proposals[i][: variant.windows]
            (out,) = model.detect_from_features(features[key], [boxes])
            preds.append({k: v.cpu() for k, v in out.items()})
        if (i + 1) % 20 == 0:
            log(f"mAP: {i + 1}/{len(data)} images")
    results = []
    for variant, model, preds in zip(variants, models, predictions, strict=True):
        voc = evaluate_voc(preds, data.targets, classes)
        results.append(
            {
                "name": variant.name,
                "svd_ranks": None if variant.svd_ranks is None else list(variant.svd_ranks),
                "windows": variant.windows,
                "scales": list(model.config.scales),
                "map_voc07": voc.map("voc07"),
                "map_voc10": voc.map("voc10"),
            }
        )
    return results


# ----------------------------------------------------------------------------- the whole run
def machine_info() -> dict[str, Any]:
    """CPU, threads and load, recorded with every run (absolute times depend on them)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


@torch.inference_mode()
def run_benchmark(
    settings: BenchSettings = BenchSettings(),
    detector: SPPNetDetector | None = None,
    tables: Sequence[str] = ("speed", "latency"),
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the tables named in ``tables`` and return a JSON-ready dict (keys in
    docs/speed.md): ``schema``, ``settings``, ``machine_start``, ``machine_end``,
    ``selective_search``, ``speed``, ``latency``.

    Args:
        settings: what to measure (:class:`BenchSettings`, :data:`QUICK`).
        detector: a trained detector for the latency table's small-network rows (default: the
            ``settings.demo_preset`` network with random weights).
        tables: any of ``"speed"`` and ``"latency"``.
        log: progress messages.
    """
    unknown = set(tables) - {"speed", "latency"}
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}; known: 'speed', 'latency'")
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "settings": _settings_dict(settings),
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
    result["machine_end"] = machine_info()
    return result


def _settings_dict(settings: BenchSettings) -> dict[str, Any]:
    out = asdict(settings)
    out["demo_variants"] = [asdict(v) for v in settings.demo_variants]
    return out


def settings_with(settings: BenchSettings, **changes: Any) -> BenchSettings:
    """``settings`` with some fields replaced (a frozen dataclass)."""
    return replace(settings, **changes)


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
