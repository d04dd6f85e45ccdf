"""The per-class linear SVMs on fc7 features with hard-negative mining (the paper's stage 6; the
solvers are in :mod:`sppnet.models.svm`)."""

from __future__ import annotations

import logging
import time
from functools import partial

import torch
from torch import Tensor

from sppnet.config import TrainingConfig
from sppnet.engine.detection.cache import FeatureCache
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.stage_log import StageLog
from sppnet.models.detector import SPPNetDetector
from sppnet.models.svm import (
    LinearSVMs,
    feature_scale,
    fit_svms_liblinear,
    fit_svms_torch,
    mine_hard_negatives,
)
from sppnet.ops.boxes import batched_nms_per_class, box_iou
from sppnet.utils.progress import progress_bar

__all__ = ["NO_POSITIVE_BIAS", "svm_training_set", "train_svms"]

logger = logging.getLogger(__name__)

NO_POSITIVE_BIAS = -1000.0


def _dedupe_negatives(proposals: Tensor, iou: float) -> Tensor:
    """Indices of proposals kept after greedy NMS in rank order (the first proposal wins)."""
    if proposals.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    rank = -torch.arange(proposals.shape[0], dtype=torch.float32)
    labels = torch.zeros(proposals.shape[0], dtype=torch.int64)
    return torch.sort(batched_nms_per_class(proposals, rank, labels, iou)).values


@torch.no_grad()
def svm_training_set(
    detector: SPPNetDetector,
    data: DetectionSet,
    cache: FeatureCache,
    cfg: TrainingConfig,
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """fc7 features and labels for the SVMs.

    Per image: the ground-truth boxes (positives of their class) and the proposals left after
    greedy NMS at ``svm_neg_nms`` among themselves. Row ``i`` is a negative of class ``c`` when its
    IoU with every ground-truth box of class ``c`` is below ``svm_neg_iou`` (0.3).

    Returns:
        ``(x [N, D] float32 fc7 features, y [N, C] int8 in {+1, -1, 0}, image [N] int64)``.
    """
    num_classes = detector.config.num_classes
    xs, ys, owners = [], [], []
    for i in progress_bar(range(len(data)), "svm features", progress):
        gt, labels = data.positives(i)
        props = data.proposals[i]
        props = props[_dedupe_negatives(props, cfg.svm_neg_nms)]
        windows = torch.cat([gt, props])
        y = torch.full((windows.shape[0], num_classes), -1, dtype=torch.int8)
        if gt.shape[0]:
            iou = box_iou(windows, gt)
            for c in labels.unique().tolist():
                cls_iou = iou[:, labels == c].max(dim=1).values
                y[cls_iou >= cfg.svm_neg_iou, c - 1] = 0
            y[torch.arange(gt.shape[0]), labels - 1] = 1
        pooled = detector.pool_windows(cache.features([i]), [windows])
        xs.append(detector.box_head(pooled.float()))
        ys.append(y)
        owners.append(torch.full((windows.shape[0],), i, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys), torch.cat(owners)


def train_svms(
    detector: SPPNetDetector,
    data: DetectionSet,
    cache: FeatureCache,
    cfg: TrainingConfig,
    progress: bool = False,
) -> tuple[LinearSVMs, StageLog]:
    """Train the per-class linear SVMs with hard-negative mining (see :mod:`sppnet.models.svm`).

    The first fit sees every positive and up to ``svm_max_negatives_per_image`` random negatives
    per image; each of ``svm_rounds`` mining rounds then adds the negatives scoring above
    ``svm_hard_threshold`` and refits.

    Returns:
        The fitted :class:`LinearSVMs` (not yet installed: use ``detector.set_box_predictor``) and
        the stage log.
    """
    log = StageLog("svm")
    start = time.perf_counter()
    was_training = detector.training
    detector.eval()
    try:
        x, y, owner = svm_training_set(detector, data, cache, cfg, progress)
    finally:
        detector.train(was_training)
    generator = torch.Generator().manual_seed(cfg.seed + 2)
    is_negative = (y < 0).any(dim=1)
    initial = torch.zeros_like(is_negative)
    for i in range(len(data)):
        rows = torch.where((owner == i) & is_negative)[0]
        pick = torch.randperm(rows.numel(), generator=generator)[: cfg.svm_max_negatives_per_image]
        initial[rows[pick]] = True
    scale = feature_scale(x, cfg.svm_feature_norm)
    fit_fn = fit_svms_torch if cfg.svm_solver == "torch" else fit_svms_liblinear
    fit = partial(
        fit_fn,
        c=cfg.svm_c,
        pos_weight=cfg.svm_pos_weight,
        bias_multiplier=cfg.svm_bias_multiplier,
    )
    # A class with no positive in the training set cannot be learned: its SVM is left at
    # weight 0 and bias NO_POSITIVE_BIAS (it never fires), and the log names it.
    present = [c for c in range(y.shape[1]) if bool((y[:, c] > 0).any())]
    missing = [c + 1 for c in range(y.shape[1]) if c not in present]
    if not present:
        raise ValueError("svm: no class has a positive example in the training set")
    if missing:
        logger.warning("svm: classes %s have no positive example; their SVMs never fire", missing)
    result, rounds = mine_hard_negatives(
        x * scale,
        y[:, present],
        initial[:, None].expand(-1, len(present)),
        fit,
        rounds=cfg.svm_rounds,
        hard_threshold=cfg.svm_hard_threshold,
    )
    weight = torch.zeros(y.shape[1], x.shape[1])
    bias = torch.full((y.shape[1],), NO_POSITIVE_BIAS)
    weight[present] = result.weight.to(weight.device)
    bias[present] = result.bias.to(bias.device)
    svms = LinearSVMs(x.shape[1], detector.config.num_classes)
    svms.set_params(weight, bias, scale)
    log.info["classes_without_positives"] = missing
    log.records = rounds
    log.seconds = time.perf_counter() - start
    log.info.update(
        windows=int(x.shape[0]),
        positives=int((y > 0).sum()),
        feature_scale=scale,
        solver=cfg.svm_solver,
        feature_bytes=x.numel() * x.element_size(),
    )
    return svms.to(next(detector.parameters()).device), log
