"""The exported ONNX detector in onnxruntime against the same detector in PyTorch, side by side.

Both paths go from a uint8 image and its proposals to detections (resize and normalise, trunk,
RoI-SPP, fc, scoring head, box decoding, NMS and box voting when the model uses them); proposals
are an input, not timed. The two are timed in interleaved rounds with the same number of threads
(``torch.set_num_threads`` and onnxruntime's ``intra_op_num_threads``), so that a change in the
load of a shared machine hits them alike; figures are medians. The detections of the two are
compared too (largest score and box differences over the detections they share by rank).

Use :func:`time_onnx_detector` with any image and windows, or :func:`run_onnx_benchmark` for the
standard case of ``sppnet bench detect`` (a 500 x 375 photograph, 2,000 windows, 2 threads).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sppnet.models.detector import SPPNetDetector

__all__ = ["SCHEMA", "format_onnx_row", "run_onnx_benchmark", "time_onnx_detector"]

#: Identifies the layout of the dict :func:`time_onnx_detector` returns.
SCHEMA = "sppnet.bench.onnx_detect/1"


def time_onnx_detector(
    detector: SPPNetDetector,
    image: Tensor,
    proposals: Tensor,
    *,
    threads: int = 2,
    repeats: int = 5,
    onnx_path: str | Path | None = None,
) -> dict[str, Any]:
    """Seconds per image of the detector in PyTorch and exported to ONNX in onnxruntime.

    Args:
        detector: an :class:`SPPNetDetector` (eval mode is set; exported to ``onnx_path``, or to
            a temporary file).
        image: Tensor[3, H, W] uint8, the image; proposals: Tensor[K, 4] its windows (original
            pixels).
        threads: threads for both runtimes (torch's setting is restored afterwards).
        repeats: timed rounds after one warm-up round; each round runs both once.
        onnx_path: where to write the export (default: a temporary directory, deleted).

    Returns:
        ``{"schema", "image_size": [H, W], "windows", "threads", "repeats", "export_seconds",
        "pytorch_seconds", "onnxruntime_seconds" (medians), "speedup" (PyTorch / onnxruntime),
        "detections": [PyTorch, onnxruntime], "max_score_difference",
        "max_box_difference"}``.
    """
    from sppnet.models.onnx_detector import OnnxDetector, export_detector_onnx

    if repeats < 1:
        raise ValueError(f"time_onnx_detector: repeats must be >= 1, got {repeats}")
    detector = detector.eval()
    previous_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(onnx_path) if onnx_path is not None else Path(tmp) / "detector.onnx"
        start = time.perf_counter()
        export_detector_onnx(detector, path)
        export_seconds = time.perf_counter() - start
        runtime = OnnxDetector(path, threads=threads)
        torch.set_num_threads(threads)
        try:
            timings: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
            outputs: dict[str, Any] = {}

            def pytorch() -> dict[str, np.ndarray]:
                with torch.no_grad():
                    out = detector([image], [proposals])[0]
                return {k: v.numpy() for k, v in out.items()}

            def onnxruntime() -> dict[str, np.ndarray]:
                return runtime(image, proposals)

            for round_index in range(repeats + 1):
                for name, fn in (("pytorch", pytorch), ("onnxruntime", onnxruntime)):
                    start = time.perf_counter()
                    outputs[name] = fn()
                    if round_index:  # the first round warms both up
                        timings[name].append(time.perf_counter() - start)
        finally:
            torch.set_num_threads(previous_threads)
    ours, theirs = outputs["onnxruntime"], outputs["pytorch"]
    shared = min(ours["scores"].size, theirs["scores"].size)
    pytorch_s = statistics.median(timings["pytorch"])
    onnx_s = statistics.median(timings["onnxruntime"])
    return {
        "schema": SCHEMA,
        "image_size": [int(image.shape[-2]), int(image.shape[-1])],
        "windows": int(proposals.shape[0]),
        "threads": threads,
        "repeats": repeats,
        "export_seconds": export_seconds,
        "pytorch_seconds": pytorch_s,
        "onnxruntime_seconds": onnx_s,
        "speedup": pytorch_s / onnx_s,
        "detections": [int(theirs["scores"].size), int(ours["scores"].size)],
        "max_score_difference": float(
            np.abs(ours["scores"][:shared] - theirs["scores"][:shared]).max(initial=0.0)
        ),
        "max_box_difference": float(
            np.abs(ours["boxes"][:shared] - theirs["boxes"][:shared]).max(initial=0.0)
        ),
    }


def run_onnx_benchmark(
    detector: SPPNetDetector,
    *,
    image_size: tuple[int, int] = (375, 500),
    windows: int = 2000,
    threads: int = 2,
    repeats: int = 5,
) -> dict[str, Any]:
    """:func:`time_onnx_detector` on ``sppnet bench detect``'s photograph and windows
    (scikit-image's astronaut at ``image_size``, selective-search windows completed with jittered
    copies to ``windows``; see :mod:`sppnet.benchmarks.detect`)."""
    from sppnet.benchmarks.detect import benchmark_image, benchmark_windows

    image = benchmark_image(image_size)
    proposals, _ = benchmark_windows(image, windows)
    return time_onnx_detector(detector, image, proposals, threads=threads, repeats=repeats)


def format_onnx_row(result: dict[str, Any]) -> str:
    """One line for a benchmark table: both times, the speedup and the differences."""
    h, w = result["image_size"]
    return (
        f"onnxruntime vs PyTorch ({w}x{h}, {result['windows']} windows, {result['threads']} "
        f"threads): {result['onnxruntime_seconds']:.3f} s vs {result['pytorch_seconds']:.3f} s "
        f"per image ({result['speedup']:.2f}x); max |score| diff "
        f"{result['max_score_difference']:.1e}, max |box| diff "
        f"{result['max_box_difference']:.1e} px"
    )
