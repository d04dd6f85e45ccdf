"""sppnet.config: plain-data configuration, below every other layer but :mod:`sppnet.io`.

- :mod:`sppnet.config.detector`: :class:`DetectorConfig` (rebuilds a detector) and presets.
- :mod:`sppnet.config.training`: :class:`TrainingConfig` (the detector's training stages).
- :mod:`sppnet.config.loader`: config files (``model`` / ``train`` / ``data``), ``--set``
  overrides, the packaged ``demo.yaml`` and ``paper.yaml``.
"""

from sppnet.config.detector import (
    PAPER_SCALES,
    PAPER_SINGLE_SCALE,
    PAPER_TARGET_SIDE,
    SCORING_HEADS,
    DetectorConfig,
    preset,
    scaled_scales,
)
from sppnet.config.loader import (
    CONFIG_PRESETS,
    ExperimentConfig,
    apply_overrides,
    config_path,
    load_config_file,
)
from sppnet.config.training import TRAINING_STAGES, TrainingConfig

__all__ = [
    "CONFIG_PRESETS",
    "PAPER_SCALES",
    "PAPER_SINGLE_SCALE",
    "PAPER_TARGET_SIDE",
    "SCORING_HEADS",
    "TRAINING_STAGES",
    "DetectorConfig",
    "ExperimentConfig",
    "TrainingConfig",
    "apply_overrides",
    "config_path",
    "load_config_file",
    "preset",
    "scaled_scales",
]
