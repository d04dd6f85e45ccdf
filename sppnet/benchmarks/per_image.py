"""The whole per-image time a user sees, proposals included, beside torchvision's detectors.

``sppnet detect`` on one photo costs selective search plus the detector; torchvision's
Faster R-CNN and SSDlite propose inside the network. :func:`per_image_table` times, in one
process and one run (medians after a warm-up), per 500 x 375 image at one scale:

- for each :class:`ProposalChoice` (selective-search mode, processes per image, overlapped or
  not, bf16 fc layers or not, window cap): proposals alone, detection alone on those proposals,
  and both (the *total*, timed as one call, which is what one ``sppnet detect IMAGE`` pays after
  loading the model): in turn, or **overlapped** (:class:`OverlappedDetector`: the proposals in
  a thread while the trunk runs). Each of the three is timed interleaved across the choices
  (round after round), so that a shared machine's changing load hits them alike;
- the choices of ``streamed``: ``stream_images`` copies of the image through
  :class:`~sppnet.proposals.stream.ImagePrefetcher` with one worker process, so that proposals
  of image ``i + 1`` overlap detection of image ``i`` (seconds per image = wall time / images,
  the first image excluded);
- ``fasterrcnn_mobilenet_v3_large_fpn`` and ``ssdlite320_mobilenet_v3_large``
  (``weights=None, weights_backbone=None``: random weights time the same), image in,
  detections out.

The detector runs as ``sppnet detect`` runs it (batch norms folded, :func:`fuse_for_inference`)
at its first scale. See docs/speed.md for a run.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sppnet.benchmarks._timing import interleaved_medians, machine_info, median_seconds
from sppnet.benchmarks.detect_settings import benchmark_image
from sppnet.inference.overlap import OverlappedDetector, detect_windows
from sppnet.models.detector import SPPNetDetector
from sppnet.models.fuse import fuse_for_inference
from sppnet.proposals.limits import LimitedProposals
from sppnet.proposals.selective_search import SelectiveSearch

__all__ = ["PerImageSettings", "ProposalChoice", "format_per_image", "per_image_table"]

SCHEMA = "sppnet.bench.per_image/1"


@dataclass(frozen=True)
class ProposalChoice:
    """A setting of the table: selective-search ``mode``, processes per image, ``overlap``
    (the proposals in a thread while the trunk runs, :class:`OverlappedDetector`), ``fc_amp``
    (``"bf16"``: autocast of the fc layers, :func:`detect_windows`) and the window cap
    ``max_proposals`` (``None``: the table's)."""

    mode: str
    processes: int = 1
    overlap: bool = False
    fc_amp: str = "off"
    max_proposals: int | None = None

    @property
    def name(self) -> str:
        name = f"{self.mode}, {self.processes} process" + ("es" if self.processes > 1 else "")
        if self.overlap:
            name += ", overlapped"
        if self.fc_amp != "off":
            name += f", {self.fc_amp} fc"
        if self.max_proposals is not None:
            name += f", <= {self.max_proposals} windows"
        return name


@dataclass(frozen=True)
class PerImageSettings:
    """What :func:`per_image_table` measures.

    Attributes:
        image_size: (H, W) of the photograph.
        choices: the proposal settings, each a row (and a streamed row).
        max_proposals: windows per image at most (as ``sppnet detect``).
        repeats, warmup: timed runs (the median) and untimed runs before them.
        streamed: the choices also streamed (their ``overlap`` is not used).
        stream_images: images per streamed run (0: no streamed rows).
        torchvision: the torchvision builders timed beside.
        target_s: the per-image target (issue 17: 0.35 s on 2 cores at 1 scale).
    """

    image_size: tuple[int, int] = (375, 500)
    choices: tuple[ProposalChoice, ...] = (
        ProposalChoice("fast"),
        ProposalChoice("lite"),
        ProposalChoice("lite", overlap=True),
        ProposalChoice("lite", overlap=True, fc_amp="bf16"),
        ProposalChoice("lite", 2, overlap=True, fc_amp="bf16"),
        ProposalChoice("lite", overlap=True, fc_amp="bf16", max_proposals=1000),
        ProposalChoice("lite_sf", overlap=True, fc_amp="bf16"),
    )
    streamed: tuple[ProposalChoice, ...] = (ProposalChoice("lite", fc_amp="bf16"),)
    max_proposals: int = 2000
    repeats: int = 5
    warmup: int = 1
    stream_images: int = 9
    torchvision: tuple[str, ...] = (
        "fasterrcnn_mobilenet_v3_large_fpn",
        "ssdlite320_mobilenet_v3_large",
    )
    target_s: float = 0.35


def _source(choice: ProposalChoice, max_proposals: int) -> LimitedProposals:
    mode: Any = choice.mode
    search = SelectiveSearch(mode=mode, max_proposals=None, workers=choice.processes)
    cap = max_proposals if choice.max_proposals is None else choice.max_proposals
    return LimitedProposals(search, 0.0, 8.0, cap)


def _detect(model: SPPNetDetector, image: Tensor, boxes: Tensor, fc_amp: str) -> Any:
    """``model([image], [boxes])``, the fc layers under ``fc_amp``."""
    return detect_windows(model, model.compute_features([image]), boxes, fc_amp)


def _interleaved(
    methods: dict[str, Callable[[], Any]], settings: PerImageSettings
) -> dict[str, float]:
    return interleaved_medians(methods, settings.repeats, warmup=settings.warmup)


def _streamed_seconds(
    detector: SPPNetDetector, source: LimitedProposals, image: Tensor, count: int, fc_amp: str
) -> float:
    """Seconds per image of ``count`` copies streamed through one prefetching worker (the first
    image, which waits for the worker's first proposals, excluded)."""
    from PIL import Image

    from sppnet.proposals.stream import ImagePrefetcher

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        with ImagePrefetcher(source, workers=1, ahead=2) as prefetcher:
            for item in prefetcher.iterate([path]):  # the worker's start-up, untimed
                _detect(detector, item.image, item.proposals, fc_amp)
            start = 0.0
            for index, item in enumerate(prefetcher.iterate([path] * count)):
                if item.error is not None:
                    raise RuntimeError(item.error)
                _detect(detector, item.image, item.proposals, fc_amp)
                if index == 0:
                    start = time.perf_counter()
            return (time.perf_counter() - start) / max(count - 1, 1)


@torch.inference_mode()
def per_image_table(
    detector: SPPNetDetector,
    settings: PerImageSettings = PerImageSettings(),
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the per-image table (see the module docstring).

    Args:
        detector: the SPP-net detector (trained or random weights); it is copied, folded and run
            at its first scale.
        settings: what to measure.
        log: progress messages.

    Returns:
        JSON-ready ``{"schema", "settings", "machine_start", "machine_end", "scale",
        "target_s", "rows": [{"name", "kind" ("sppnet" | "sppnet_streamed" | "torchvision"),
        "proposals_s", "detect_s", "total_s", "windows", "meets_target"}]}``; torchvision rows
        have ``proposals_s``/``detect_s``/``windows`` None.
    """
    import copy

    import torchvision

    image = benchmark_image(settings.image_size)
    scale = int(detector.config.scales[0])
    model = copy.deepcopy(detector).eval()
    model.config = model.config.replace(scales=(scale,))
    model.transform.scales = (scale,)
    model = fuse_for_inference(model)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "settings": asdict(settings),
        "machine_start": machine_info(),
        "scale": scale,
        "target_s": settings.target_s,
        "rows": [],
    }

    choices = settings.choices
    sources = {choice.name: _source(choice, settings.max_proposals) for choice in choices}
    boxes = {name: source(image, "benchmark") for name, source in sources.items()}
    with contextlib.ExitStack() as stack:
        overlapped = {
            choice.name: stack.enter_context(
                OverlappedDetector(model, sources[choice.name], fc_amp=choice.fc_amp)
            )
            for choice in choices
            if choice.overlap
        }

        def total(choice: ProposalChoice) -> Any:
            if choice.overlap:
                return overlapped[choice.name](image, "benchmark")
            return _detect(model, image, sources[choice.name](image, "benchmark"), choice.fc_amp)

        # Each measurement interleaved across the choices: the load of a shared machine hits
        # them alike.
        log(f"per image: {len(choices)} choices, proposals alone ...")
        proposals_s = _interleaved(
            {c.name: partial(sources[c.name], image, "benchmark") for c in choices}, settings
        )
        log("per image: detection alone ...")
        detect_s = _interleaved(
            {c.name: partial(_detect, model, image, boxes[c.name], c.fc_amp) for c in choices},
            settings,
        )
        log("per image: proposals and detection ...")
        total_s = _interleaved({c.name: partial(total, c) for c in choices}, settings)
    for choice in choices:
        name = choice.name
        result["rows"].append(
            _row(
                name,
                "sppnet",
                proposals_s[name],
                detect_s[name],
                total_s[name],
                len(boxes[name]),
                settings,
            )
        )
    if settings.stream_images > 1:
        for choice in settings.streamed:
            log(f"per image: {choice.name}, streamed ...")
            source = _source(choice, settings.max_proposals)
            streamed = _streamed_seconds(
                model, source, image, settings.stream_images, choice.fc_amp
            )
            windows = len(source(image, "benchmark"))
            result["rows"].append(
                _row(
                    f"{choice.name}, streamed (1 worker)",
                    "sppnet_streamed",
                    None,
                    None,
                    streamed,
                    windows,
                    settings,
                )
            )

    def timed(fn: Callable[[], Any]) -> float:
        return median_seconds(fn, settings.repeats, settings.warmup)

    x = image.float() / 255
    for name in settings.torchvision:
        log(f"per image: torchvision {name} ...")
        builder = getattr(torchvision.models.detection, name)
        network = builder(weights=None, weights_backbone=None).eval()
        seconds = timed(lambda network=network: network([x]))
        result["rows"].append(
            _row(f"torchvision {name}", "torchvision", None, None, seconds, None, settings)
        )
    result["machine_end"] = machine_info()
    return result


def _row(
    name: str,
    kind: str,
    proposals_s: float | None,
    detect_s: float | None,
    total_s: float,
    windows: int | None,
    settings: PerImageSettings,
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "proposals_s": proposals_s,
        "detect_s": detect_s,
        "total_s": total_s,
        "windows": windows,
        "meets_target": total_s <= settings.target_s,
    }


def format_per_image(result: dict[str, Any]) -> str:
    """The table as plain text (seconds per image)."""
    start, end = result["machine_start"], result["machine_end"]
    height, width = result["settings"]["image_size"]
    lines = [
        f"Per image, proposals included ({width} x {height}, scale {result['scale']}, "
        f"{start['torch_threads']} torch threads, load {start['load_avg_1m']:.1f} -> "
        f"{end['load_avg_1m']:.1f}; medians; target {result['target_s']:.2f} s):",
        f"{'method':<56} {'windows':>7} {'proposals':>9} {'detect':>7} {'total':>7}  target",
    ]
    for row in result["rows"]:
        cells = [
            "" if row[key] is None else f"{row[key]:.3f}" for key in ("proposals_s", "detect_s")
        ]
        windows = "" if row["windows"] is None else str(row["windows"])
        lines.append(
            f"{row['name']:<56} {windows:>7} {cells[0]:>9} {cells[1]:>7} {row['total_s']:>7.3f}"
            f"  {'met' if row['meets_target'] else 'missed'}"
        )
    return "\n".join(lines)
