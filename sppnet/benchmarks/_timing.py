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

__all__ = ["interleaved_medians", "machine_info", "median_seconds", "synchronize"]


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (CUDA); a no-op elsewhere."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    methods: dict[str, Callable[[], Any]],
    repeats: int,
    device: torch.device | str | None = None,
    warmup: int = 1,
) -> dict[str, float]:
    """Median wall seconds of each method over ``repeats`` rounds, the methods taking turns in
    every round; ``warmup`` untimed rounds first. On CUDA each run is synchronised."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in methods.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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
