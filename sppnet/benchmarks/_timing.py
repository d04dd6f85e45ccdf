"""What every benchmark times with: medians of wall-clock runs (optionally interleaved across
methods so that a shared machine's changing load hits them alike) and the machine's facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "interleaved_medians",
    "machine_info",
    "median_seconds",
    "run_seconds",
    "synchronize",
]


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for the device's queued work (CUDA; with ``device=None``, any work queued since CUDA
    was initialised), so that wall-clock times cover it; a no-op elsewhere."""
    if device is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    elif torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    methods: dict[str, Callable[[], Any]],
    repeats: int,
    device: torch.device | str | None = None,
    warmup: int = 1,
) -> dict[str, float]:
    """Median wall seconds of each method over ``repeats`` rounds, the methods taking turns in
    every round; ``warmup`` untimed rounds first. Each run is synchronised with ``device``
    (see :func:`synchronize`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in methods.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            times[name].append(run_seconds(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def run_seconds(fn: Callable[[], Any], device: torch.device | str | None = None) -> float:
    """Seconds of one run of ``fn``: CUDA events on a CUDA ``device`` (the GPU time from the
    first kernel queued to the last one done, after the queue was drained), else the wall clock
    around it (synchronised as :func:`synchronize`)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    synchronize(device)
    begin = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - begin


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    return interleaved_medians({"fn": fn}, repeats, warmup=warmup)["fn"]


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
