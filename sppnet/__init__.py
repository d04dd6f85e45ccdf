"""sppnet: SPP-net (He, Zhang, Ren & Sun, 2014) for PyTorch.

The SPP op is exported here as in :mod:`sppnet.ops`; sub-packages load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_OPS = ("RoISpatialPyramidPooling", "SpatialPyramidPooling", "roi_spp", "spp")

__all__ = [*_OPS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _OPS:
        return getattr(importlib.import_module("sppnet.ops"), name)
    raise AttributeError(f"module 'sppnet' has no attribute {name!r}")
