"""Deprecated: the configs moved to :mod:`sppnet.config` (this alias goes in the next release)."""

import warnings

from sppnet.config import (  # noqa: F401
    PAPER_SCALES,
    PAPER_SINGLE_SCALE,
    PAPER_TARGET_SIDE,
    SCORING_HEADS,
    DetectorConfig,
    ExperimentConfig,
    TrainingConfig,
    load_config_file,
    preset,
    scaled_scales,
)

warnings.warn(
    "sppnet.models.detector_config is deprecated; import from sppnet.config instead",
    DeprecationWarning,
    stacklevel=2,
)
