"""Detections for every image of a :class:`~sppnet.engine.detection.DetectionSet`: one scoring
head (:func:`predict`), or several heads from one pass of conv, pooling and fc6/fc7
(:func:`predict_variants`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sppnet.engine.detection.data import DetectionSet
from sppnet.models.detector import SPPNetDetector
from sppnet.models.features import MultiScaleFeatures
from sppnet.models.fuse import fuse_for_inference
from sppnet.models.postprocess import DetectionPostprocess
from sppnet.models.scoring import head_scoring
from sppnet.utils.amp import autocast
from sppnet.utils.progress import progress_bar

__all__ = ["poolable_features", "predict", "predict_variants"]


@torch.no_grad()
def poolable_features(features: MultiScaleFeatures) -> MultiScaleFeatures:
    """Maps a 16-bit autocast made, as float32 on the CPU: its pooling kernels (numba) take
    float32, and pooling a 16-bit map there takes the much slower pure-PyTorch path (a demo
    image: 0.65 s instead of 0.14 s). On a GPU the Triton kernel pools 16-bit maps as they are."""
    if features.maps[0].device.type != "cpu" or features.maps[0].dtype == torch.float32:
        return features
    return features.to(torch.float32)


def predict(
    detector: SPPNetDetector,
    data: DetectionSet,
    progress: bool = False,
    fuse: bool = True,
    amp: str = "off",
) -> tuple[list[dict[str, Tensor]], dict[str, float]]:
    """Detections for every image of ``data`` (eval mode), and the seconds spent per stage
    (``conv``, ``pool``, ``fc`` summed over images, ``images``). With ``fuse`` an inference copy
    of the detector runs (:func:`~sppnet.models.fuse.fuse_for_inference`: the same function
    up to float rounding, ~1.6x faster conv layers on CPU). Images and proposals go to the
    detector's device; ``amp`` (``"off"``, ``"bf16"``, ``"fp16"``) runs the trunk and the fc
    layers under autocast (scores, boxes and NMS stay float32). Detections come back on the
    CPU."""
    detector = fuse_for_inference(detector) if fuse else detector.eval()
    device = next(detector.parameters()).device
    out = []
    times = {"conv": 0.0, "pool_fc_nms": 0.0, "images": 0.0}
    for i in progress_bar(range(len(data)), "detect", progress):
        t0 = time.perf_counter()
        with autocast(device, amp):
            feats = poolable_features(detector.compute_features([data.image(i).to(device)]))
            t1 = time.perf_counter()
            (result,) = detector.detect_from_features(feats, [data.proposals[i].to(device)])
        out.append({k: v.cpu() for k, v in result.items()})
        t2 = time.perf_counter()
        times["conv"] += t1 - t0
        times["pool_fc_nms"] += t2 - t1
    times["images"] = float(len(data))
    return out, times


@torch.no_grad()
def predict_variants(
    detector: SPPNetDetector,
    data: DetectionSet,
    heads: dict[str, nn.Module],
    box_regression: Sequence[bool] = (True, False),
    progress: bool = False,
    fuse: bool = True,
    amp: str = "off",
) -> tuple[dict[str, list[dict[str, Tensor]]], dict[str, float]]:
    """Detections of several scoring heads from one pass of conv, pooling and fc6/fc7.

    Args:
        detector: supplies the trunk, scales, pooler, fc layers, box regressor and
            post-processing settings.
        data: the images and proposals.
        heads: name -> :class:`SoftmaxHead`, :class:`LinearSVMs` or :class:`SoftmaxSVMFusion`
            (each scored with its own score threshold from the detector's config: the SVM one
            for margins, else the softmax one).
        box_regression: which of with (True) / without (False) the box regressor to produce.
        fuse: run an inference copy of the detector (as :func:`predict`).
        amp: autocast mode of the trunk and fc layers (as :func:`predict`).

    Returns:
        ``({variant: per-image detections}, seconds)``; variants are named ``"<head>"`` (with
        box regression) and ``"<head>/no_bbox"``; ``seconds`` holds ``conv`` and ``rest`` totals.
    """
    detector = fuse_for_inference(detector) if fuse else detector.eval()
    cfg = detector.config
    post = {
        name: DetectionPostprocess.from_config(cfg, head_scoring(head))
        for name, head in heads.items()
    }
    regress = [r for r in box_regression if not r or detector.box_regressor is not None]
    out: dict[str, list[dict[str, Tensor]]] = {
        (name if r else f"{name}/no_bbox"): [] for name in heads for r in regress
    }
    times = {"conv": 0.0, "rest": 0.0}
    device = next(detector.parameters()).device
    for i in progress_bar(range(len(data)), "detect", progress):
        t0 = time.perf_counter()
        with autocast(device, amp):
            feats = poolable_features(detector.compute_features([data.image(i).to(device)]))
        t1 = time.perf_counter()
        props = data.proposals[i].to(device)
        with autocast(device, amp):
            pooled = detector.pool_windows(feats, [props]).float()
            x = detector.box_head(pooled)
            deltas = None
            if detector.box_regressor is not None and True in regress:
                reg_in = detector.box_regression_features(pooled, x)
                deltas = detector.box_regressor(reg_in).float().reshape(props.shape[0], -1)
            scores_by_head = {name: head.class_scores(x).float() for name, head in heads.items()}
        m = props.shape[0]
        boxes_by_mode = {False: None, True: None}
        for r in regress:
            if not r:
                boxes_by_mode[r] = props[:, None, :].expand(m, cfg.num_classes, 4)
            else:
                assert deltas is not None
                boxes_by_mode[r] = detector.box_coder.decode(deltas, props).view(m, -1, 4)
        for name, scores in scores_by_head.items():
            for r in regress:
                result = post[name](boxes_by_mode[r], scores, feats.image_sizes[0])
                out[name if r else f"{name}/no_bbox"].append(
                    {k: v.cpu() for k, v in result.items()}
                )
        times["conv"] += t1 - t0
        times["rest"] += time.perf_counter() - t1
    return out, times
