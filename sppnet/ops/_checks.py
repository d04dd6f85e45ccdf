"""Argument checks shared by :func:`sppnet.ops.spp` and :func:`sppnet.ops.roi_spp`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MODES = ("max", "avg")
MAPPINGS = ("paper", "round")
BACKENDS = ("auto", "torch", "numba", "triton")


def check_input(input: Tensor, fn: str) -> None:
    """``input`` must be a floating Tensor[N, C, H, W] with H, W >= 1."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(
            f"{fn}: input must be 4-D [N, C, H, W], got {input.dim()}-D shape {tuple(input.shape)}"
        )
    if not input.is_floating_point():
        raise TypeError(f"{fn}: input must have a floating dtype, got {input.dtype}")
    if input.shape[2] < 1 or input.shape[3] < 1:
        raise ValueError(
            f"{fn}: input height and width must be >= 1, got shape {tuple(input.shape)}"
        )


def check_levels(levels: Sequence[int], fn: str) -> tuple[int, ...]:
    """A non-empty sequence of positive ints (any order, repeats allowed), returned as a tuple."""
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence):
        raise TypeError(f"{fn}: levels must be a sequence of ints, got {levels!r}")
    if len(levels) == 0:
        raise ValueError(f"{fn}: levels must not be empty")
    out = []
    for n in levels:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"{fn}: every level must be an int, got {n!r} in {tuple(levels)!r}")
        if n < 1:
            raise ValueError(f"{fn}: every level must be >= 1, got {n} in {tuple(levels)!r}")
        out.append(int(n))
    return tuple(out)


def check_mode(mode: str, fn: str) -> str:
    if mode not in MODES:
        raise ValueError(f"{fn}: mode must be one of {MODES}, got {mode!r}")
    return mode


def check_mapping(mapping: str, fn: str) -> str:
    if mapping not in MAPPINGS:
        raise ValueError(f"{fn}: mapping must be one of {MAPPINGS}, got {mapping!r}")
    return mapping


def check_backend(backend: str, fn: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{fn}: backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def check_spatial_scale(spatial_scale: float, fn: str) -> float:
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, (int, float)):
        raise TypeError(f"{fn}: spatial_scale must be a float, got {spatial_scale!r}")
    scale = float(spatial_scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{fn}: spatial_scale must be a finite number > 0, got {spatial_scale!r}")
    return scale


def num_bins(levels: Sequence[int]) -> int:
    """Bins per channel of a pyramid: ``sum(n * n for n in levels)``."""
    return sum(n * n for n in levels)


def coordinate_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (everything but Apple's MPS), for exact box arithmetic."""
    return torch.float32 if device.type == "mps" else torch.float64
