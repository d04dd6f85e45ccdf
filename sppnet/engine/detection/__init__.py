"""Training the SPP-net detector: the paper's stages, plus end-to-end fine-tuning.

The stages (section 4 of the paper), one module each:

1. :mod:`~sppnet.engine.detection.cache` - :class:`FeatureCache`: conv maps of every training
   image at every scale, computed once with the trunk frozen, kept in ``cache_dtype``.
2. :mod:`~sppnet.engine.detection.finetune` - :func:`finetune_fc`: fc6, fc7 and a new fc8
   fine-tuned with the trunk frozen on sampled windows (25% foreground in the paper); and
   :func:`finetune_end_to_end` (beyond the paper): the same loss back-propagated through
   ``roi_spp`` into the trunk, one random scale per step as in Fast R-CNN.
3. :mod:`~sppnet.engine.detection.svm` - :func:`train_svms`: per-class linear SVMs on fc7 with
   hard-negative mining.
4. :mod:`~sppnet.engine.detection.bbox` - :func:`train_box_regressor`: per-class ridge
   regression of R-CNN's (dx, dy, dw, dh).

:func:`~sppnet.engine.detection.pipeline.train_detector` runs the stages a
:class:`~sppnet.config.TrainingConfig` names from the table
:data:`~sppnet.engine.detection.pipeline.STAGES`. Data: a :class:`DetectionSet`
(:mod:`~sppnet.engine.detection.data`), built from a config by
:mod:`~sppnet.engine.detection.build`; :mod:`~sppnet.engine.detection.run` trains and saves a
detector from a whole config file.
"""

import importlib
import warnings
from typing import Any

from sppnet.engine.detection.bbox import ridge_regression, train_box_regressor
from sppnet.engine.detection.cache import FeatureCache
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.finetune import finetune_end_to_end, finetune_fc, trunk_parameters
from sppnet.engine.detection.pipeline import STAGES, TrainedHeads, TrainingRun, train_detector
from sppnet.engine.detection.stage_log import StageLog
from sppnet.engine.detection.svm import svm_training_set, train_svms

__all__ = [
    "STAGES",
    "DetectionSet",
    "FeatureCache",
    "StageLog",
    "TrainedHeads",
    "TrainingRun",
    "finetune_end_to_end",
    "finetune_fc",
    "ridge_regression",
    "svm_training_set",
    "train_box_regressor",
    "train_detector",
    "train_svms",
    "trunk_parameters",
]

#: Names that moved to :mod:`sppnet.inference`; still importable from here for one release.
_MOVED = {"predict": "sppnet.inference", "predict_variants": "sppnet.inference"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"sppnet.engine.detection.{name} moved to {_MOVED[name]}.{name}; the old name goes "
            "in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
