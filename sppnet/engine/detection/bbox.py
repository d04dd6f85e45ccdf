"""Bounding-box regression (the paper's stage 7): per-class ridge regression of R-CNN's
(dx, dy, dw, dh) from the pooled conv features (or fc7) of windows with IoU >= ``bbox_iou``."""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor

from sppnet.config import TrainingConfig
from sppnet.engine.detection.cache import FeatureCache
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.stage_log import StageLog
from sppnet.models.detector import SPPNetDetector
from sppnet.models.sampling import label_windows
from sppnet.models.svm import feature_scale
from sppnet.utils.progress import progress_bar

__all__ = ["ridge_regression", "train_box_regressor"]

logger = logging.getLogger(__name__)


def ridge_regression(x: Tensor, y: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """Ridge regression with an unregularised bias: minimise ``|y - x w - b|^2 + lam |w|^2``.

    Solved in the primal (D x D system) or the dual (N x N) form, whichever is smaller.
    (R-CNN also whitens the targets first; with one ``lam`` for all outputs that changes nothing,
    since the ridge solution is linear in ``y``.)

    Args:
        x: Tensor[N, D]; y: Tensor[N, T]; lam > 0.

    Returns:
        ``(w [D, T], b [T])`` float32.
    """
    if lam <= 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    x64, y64 = x.double(), y.double()
    xm, ym = x64.mean(0), y64.mean(0)
    xc, yc = x64 - xm, y64 - ym
    n, d = xc.shape
    if d <= n:
        eye = torch.eye(d, dtype=xc.dtype, device=xc.device)
        w = torch.linalg.solve(xc.t() @ xc + lam * eye, xc.t() @ yc)
    else:
        eye = torch.eye(n, dtype=xc.dtype, device=xc.device)
        w = xc.t() @ torch.linalg.solve(xc @ xc.t() + lam * eye, yc)
    b = ym - xm @ w
    return w.float(), b.float()


@torch.no_grad()
def train_box_regressor(
    detector: SPPNetDetector,
    data: DetectionSet,
    cache: FeatureCache,
    cfg: TrainingConfig,
    progress: bool = False,
) -> StageLog:
    """Fit ``detector.box_regressor`` by per-class ridge regression (the paper's stage 7).

    Training windows: the proposals (and ground-truth boxes) whose IoU with a ground-truth box is
    >= ``bbox_iou``; the target is R-CNN's (dx, dy, dw, dh) to that box, encoded with the
    detector's box coder; the features are the pooled conv maps (``pool5``) or fc7, scaled to mean
    norm ``svm_feature_norm`` (20), and the ridge strength is ``bbox_lambda`` (4000).
    """
    if detector.box_regressor is None:
        raise ValueError("the detector has no box regressor (config.box_regression is False)")
    log = StageLog("box_regression")
    start = time.perf_counter()
    was_training = detector.training
    detector.eval()
    xs, ts, cs = [], [], []
    try:
        for i in progress_bar(range(len(data)), "bbox features", progress):
            gt, labels = data.positives(i)
            if gt.shape[0] == 0:
                continue
            windows = torch.cat([gt, data.proposals[i]])
            max_iou, matched, cls = label_windows(windows, gt, labels)
            keep = torch.where(max_iou >= cfg.bbox_iou)[0]
            windows, matched, cls = windows[keep], matched[keep], cls[keep]
            ok = (windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])
            windows, matched, cls = windows[ok], matched[ok], cls[ok]
            pooled = detector.pool_windows(cache.features([i]), [windows]).float()
            xs.append(detector.box_regression_features(pooled))
            ts.append(detector.box_coder.encode(gt[matched], windows))
            cs.append(cls)
    finally:
        detector.train(was_training)
    x, t, c = torch.cat(xs), torch.cat(ts), torch.cat(cs)
    scale = feature_scale(x, cfg.svm_feature_norm)
    reg = detector.box_regressor
    weight = torch.zeros_like(reg.linear.weight)
    bias = torch.zeros_like(reg.linear.bias)
    counts = {}
    for k in range(1, detector.config.num_classes + 1):
        rows = torch.where(c == k)[0]
        counts[k] = int(rows.numel())
        if rows.numel() < 2:
            logger.warning(
                "box regression: class %d has %d windows; left as identity", k, rows.numel()
            )
            continue
        w, b = ridge_regression(x[rows] * scale, t[rows], cfg.bbox_lambda)
        weight[4 * (k - 1) : 4 * k] = w.t()
        bias[4 * (k - 1) : 4 * k] = b
    reg.set_linear(weight, bias, scale)
    pred = reg(x)[torch.arange(x.shape[0]), c - 1]
    log.seconds = time.perf_counter() - start
    log.info.update(
        windows=int(x.shape[0]),
        windows_per_class=counts,
        feature_scale=scale,
        target_mse_before=float(t.pow(2).mean()),
        target_mse_after=float((pred - t).pow(2).mean()),
    )
    return log
