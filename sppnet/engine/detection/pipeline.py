"""The whole training run: the stages a :class:`~sppnet.config.TrainingConfig` names, run in the
paper's order from a table of stages that share one signature, ``stage(run: TrainingRun)``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sppnet.config import TRAINING_STAGES, TrainingConfig
from sppnet.engine.detection.bbox import train_box_regressor
from sppnet.engine.detection.cache import CACHE_DTYPES, FeatureCache
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.finetune import (
    finetune_end_to_end,
    finetune_fc,
    trunk_prefix_cache,
)
from sppnet.engine.detection.stage_log import StageLog
from sppnet.engine.detection.svm import train_svms
from sppnet.engine.prefix_cache import TrunkPrefixCache
from sppnet.models.detector import SPPNetDetector
from sppnet.models.heads import SoftmaxHead
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.models.svm import LinearSVMs

__all__ = ["STAGES", "TrainedHeads", "TrainingRun", "train_detector"]


@dataclass
class TrainedHeads:
    """The scoring heads a training run produced (the softmax fc8 and/or the SVMs)."""

    softmax: SoftmaxHead | None = None
    svm: LinearSVMs | None = None
    logs: list[StageLog] = field(default_factory=list)


@dataclass
class TrainingRun:
    """What the stages share: the detector being trained, its data and settings, what earlier
    stages left (the heads, the logs) and the caches that stay valid between them."""

    detector: SPPNetDetector
    data: DetectionSet
    cfg: TrainingConfig
    output_dir: Path
    resume: bool = False
    progress: bool = False
    #: Where the gradient stages write TensorBoard scalars (None: they do not).
    tensorboard_dir: Path | None = None
    heads: TrainedHeads = field(default_factory=TrainedHeads)
    #: The frozen-prefix cache (end-to-end runs only); serves the conv-map caches too.
    trunk: TrunkPrefixCache | None = None
    _features: FeatureCache | None = None

    def features(self) -> FeatureCache:
        """The conv maps of every image at every scale, built on first use after the trunk last
        changed (and logged as the ``feature_cache`` stage)."""
        if self._features is None:
            start = time.perf_counter()
            dtype = CACHE_DTYPES[self.cfg.cache_dtype]
            cache = FeatureCache.build(
                self.detector, self.data, dtype, self.progress, trunk=self.trunk
            )
            log = StageLog("feature_cache", time.perf_counter() - start)
            log.info.update(bytes=cache.nbytes, dtype=self.cfg.cache_dtype, images=len(cache))
            self.heads.logs.append(log)
            self._features = cache
        return self._features

    def trunk_changed(self) -> None:
        """Forget the conv-map cache (the trunk's weights moved)."""
        self._features = None


def _finetune_fc(run: TrainingRun) -> None:
    log = finetune_fc(
        run.detector,
        run.data,
        run.features(),
        run.cfg,
        run.output_dir,
        run.resume,
        run.progress,
        run.tensorboard_dir,
    )
    run.heads.logs.append(log)


def _end_to_end(run: TrainingRun) -> None:
    log = finetune_end_to_end(
        run.detector,
        run.data,
        run.cfg,
        run.output_dir,
        run.resume,
        run.progress,
        run.trunk,
        run.tensorboard_dir,
    )
    run.heads.logs.append(log)
    run.trunk_changed()


def _svm(run: TrainingRun) -> None:
    svms, log = train_svms(run.detector, run.data, run.features(), run.cfg, run.progress)
    run.heads.svm = svms
    run.heads.logs.append(log)


def _box_regression(run: TrainingRun) -> None:
    log = train_box_regressor(run.detector, run.data, run.features(), run.cfg, run.progress)
    run.heads.logs.append(log)


#: Every training stage by name, in the order they run (the order of ``TRAINING_STAGES``).
STAGES: dict[str, Callable[[TrainingRun], None]] = {
    "finetune_fc": _finetune_fc,
    "end_to_end": _end_to_end,
    "svm": _svm,
    "box_regression": _box_regression,
}
assert tuple(STAGES) == TRAINING_STAGES


def train_detector(
    detector: SPPNetDetector,
    data: DetectionSet,
    cfg: TrainingConfig,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = False,
    tensorboard_dir: str | os.PathLike[str] | None = None,
) -> TrainedHeads:
    """Run the stages ``cfg.stages`` names, in the paper's order.

    Gradient stages checkpoint under ``output_dir/<stage>`` and, with ``resume``, continue from
    there (a finished stage is restored, not re-run). Leaves ``detector`` in eval mode with the
    head its ``config.scoring`` names installed (the SVMs when ``scoring == "svm"``, both fused
    for ``"softmax+svm"``, else fc8).
    With ``tensorboard_dir`` the gradient stages write TensorBoard scalars there
    (:class:`~sppnet.engine.tensorboard.TensorBoardLogger`, tags ``<stage>/<name>``).
    Returns both heads and the logs.
    """
    torch.manual_seed(cfg.seed)
    wanted_scoring = detector.config.scoring
    if isinstance(detector.box_predictor, SoftmaxSVMFusion):
        detector.set_box_predictor(detector.box_predictor.softmax)
    if not isinstance(detector.box_predictor, SoftmaxHead):
        device = next(detector.parameters()).device
        fc8 = SoftmaxHead(detector.representation_size, detector.config.num_classes)
        detector.set_box_predictor(fc8.to(device))
    tb = None if tensorboard_dir is None else Path(tensorboard_dir)
    run = TrainingRun(detector, data, cfg, Path(output_dir), resume, progress, tb)
    if "end_to_end" in cfg.stages:
        run.trunk = trunk_prefix_cache(detector, data, cfg)[0]
    for name, stage in STAGES.items():
        if name in cfg.stages:
            stage(run)
    heads = run.heads
    heads.softmax = detector.box_predictor  # type: ignore[assignment]
    if wanted_scoring in ("svm", "softmax+svm"):
        if heads.svm is None:
            raise ValueError(
                f"config.scoring is {wanted_scoring!r} but the 'svm' stage did not run"
            )
        if wanted_scoring == "svm":
            detector.set_box_predictor(heads.svm)
        else:
            detector.set_box_predictor(SoftmaxSVMFusion(heads.softmax, heads.svm))
    detector.eval()
    return heads
