"""Mixed precision: the ``--amp`` modes and the ``torch.autocast`` context each stands for."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["AMP_MODES", "autocast", "autocast_dtype", "check_amp"]

#: ``"off"`` (float32), ``"bf16"`` (bfloat16 autocast), ``"fp16"`` (float16 autocast; in
#: training with a gradient scaler).
AMP_MODES: tuple[str, ...] = ("off", "bf16", "fp16")


def check_amp(mode: str, what: str = "amp") -> str:
    """``mode`` if it is one of :data:`AMP_MODES`, else ValueError naming ``what``."""
    if mode not in AMP_MODES:
        raise ValueError(f"{what} must be one of {AMP_MODES}, got {mode!r}")
    return mode


def autocast_dtype(mode: str) -> torch.dtype | None:
    """The autocast dtype of a mode (None for ``"off"``)."""
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[check_amp(mode)]


def autocast(device: torch.device | str, mode: str) -> Any:
    """``torch.autocast`` on ``device``'s type in ``mode``'s dtype, or a no-op for ``"off"``."""
    dtype = autocast_dtype(mode)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): there, a bf16
    matrix product is about twice as fast as a float32 one; elsewhere oneDNN emulates it."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
