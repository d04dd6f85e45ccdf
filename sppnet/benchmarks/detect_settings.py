"""The settings, inputs and networks of ``sppnet bench detect`` (see
:mod:`sppnet.benchmarks.detect`)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sppnet.benchmarks._timing import median_seconds
from sppnet.config import PAPER_SCALES, preset, scaled_scales
from sppnet.models.detector import SPPNetDetector
from sppnet.models.fuse import fuse_for_inference
from sppnet.models.svd import compress_fc

__all__ = [
    "QUICK",
    "SCHEMA",
    "TORCHVISION_MODELS",
    "BenchSettings",
    "Variant",
    "benchmark_image",
    "benchmark_windows",
    "demo_network",
    "paper_network",
    "settings_dict",
    "settings_median",
    "settings_with",
    "with_heads",
    "with_scales",
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
        model = model if self.scales is None else with_scales(model, self.scales)
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
        demo_preset: the :func:`~sppnet.config.preset` of the latency table's
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


def with_scales(detector: SPPNetDetector, scales: Sequence[int]) -> SPPNetDetector:
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


def settings_dict(settings: BenchSettings) -> dict[str, Any]:
    out = asdict(settings)
    out["demo_variants"] = [asdict(v) for v in settings.demo_variants]
    return out


def settings_with(settings: BenchSettings, **changes: Any) -> BenchSettings:
    """``settings`` with some fields replaced (a frozen dataclass)."""
    return replace(settings, **changes)


def settings_median(fn: Callable[[], Any], settings: BenchSettings) -> float:
    return median_seconds(fn, settings.repeats, settings.warmup)
