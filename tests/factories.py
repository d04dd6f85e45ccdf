"""Small objects many tests build: a tiny detector with random weights (importable from every test
folder, since tests/conftest.py puts this folder on ``sys.path``)."""

from __future__ import annotations

from typing import Any

import torch

from sppnet.config import DetectorConfig
from sppnet.models import SPPNetDetector

#: The tiny detector's settings: the ``small`` trunk (8, 8, 16 channels, stride 4), two pyramid
#: levels, one 64 px scale, one fc layer of 16; runs in milliseconds on a CPU.
TINY_DETECTOR: dict[str, Any] = dict(
    num_classes=2,
    backbone="small",
    backbone_kwargs={"channels": [8, 8, 16]},
    backbone_weights=None,
    levels=(2, 1),
    scales=(64,),
    fc_dims=(16,),
    max_size=400,
    target_side=48.0,
)


def tiny_detector_config(**overrides: Any) -> DetectorConfig:
    """:data:`TINY_DETECTOR` with ``overrides``."""
    return DetectorConfig(**{**TINY_DETECTOR, **overrides})


def tiny_detector(seed: int = 0, **overrides: Any) -> SPPNetDetector:
    """A tiny :class:`SPPNetDetector` (random weights from ``seed``) in eval mode."""
    torch.manual_seed(seed)
    return SPPNetDetector(tiny_detector_config(**overrides)).eval()


def _sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


#: ``--set`` overrides that shrink the demo recipe to seconds (tiny images, one epoch of each
#: stage, few windows), for end-to-end tests of the commands that train.
TINY_RECIPE: list[str] = _sets(
    "model.scales=[160]",
    "train.train_scales=[144, 176]",
    "model.fc_dims=[32, 32]",
    "train.epochs_fc=1",
    "train.epochs_e2e=1",
    "train.windows_per_batch=32",
    "train.svm_rounds=1",
    "data.proposals={mode: fast, shorter_side: 128, max_proposals: 300}",
)
