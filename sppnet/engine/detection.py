"""Training the SPP-net detector: the paper's stages, plus end-to-end fine-tuning.

The stages (section 4 of the paper), each a function here:

1. :class:`FeatureCache` - conv maps of every training image at every scale, computed once with
   the trunk frozen and kept in ``cache_dtype`` (float16 by default). The paper cached the *pooled*
   features of every window, which is ``K * C * 50`` floats per image (2,000 windows x 96 channels x
   50 bins x 4 bytes = 38 MB per image with the demo trunk); the conv maps are ``C * h * w`` values
   per scale (96 x 30 x 34 x 2 bytes = 0.2 MB for a 480 x 550 demo image), so windows are re-pooled
   from them on demand, which costs little next to fc6.
2. :func:`finetune_fc` - fc6, fc7 and a new fc8 (num_classes + 1 outputs) fine-tuned with the trunk
   frozen, on mini-batches of windows 25% of which are foreground (IoU >= 0.5) and the rest
   background (IoU in [0.1, 0.5)); features come from the cache.
3. :func:`finetune_end_to_end` - beyond the paper: the same loss back-propagated through
   ``roi_spp`` into the trunk (all but its first ``trunk_frozen_prefix`` blocks; batch norm
   frozen), one random scale per step as in Fast R-CNN. The cache is stale afterwards.
4. :func:`train_svms` - the per-class linear SVMs on fc7 features with hard-negative mining
   (:mod:`sppnet.models.svm`).
5. :func:`train_box_regressor` - per-class ridge regression of R-CNN's (dx, dy, dw, dh) from the
   pooled conv features (or fc7) of windows with IoU >= 0.5.

:func:`train_detector` runs the stages a :class:`~sppnet.config.TrainingConfig`
names. The gradient stages run on :class:`sppnet.engine.trainer.Trainer` (progress bar, logged
losses, checkpoints with resume, SIGINT, non-finite loss, DDP under torchrun).

Data: a :class:`DetectionSet` - the targets and proposals of every image in memory, the images
themselves read from the dataset on demand (or kept in memory).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from sppnet.engine.distributed import all_gather_object, get_world_size, shard
from sppnet.engine.prefix_cache import TrunkPrefixCache
from sppnet.models.detector import (
    MultiScaleFeatures,
    SPPNetDetector,
    WindowSampling,
    _pad_stack,
    label_windows,
)
from sppnet.config import TrainingConfig
from sppnet.models.fuse import fuse_for_inference
from sppnet.models.heads import SoftmaxHead
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.models.svm import (
    LinearSVMs,
    feature_scale,
    fit_svms_liblinear,
    fit_svms_torch,
    mine_hard_negatives,
)
from sppnet.ops.boxes import batched_nms_per_class, box_iou

__all__ = [
    "DetectionSet",
    "FeatureCache",
    "StageLog",
    "TrainedHeads",
    "finetune_end_to_end",
    "finetune_fc",
    "predict",
    "train_box_regressor",
    "train_detector",
    "train_svms",
]

logger = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

#: Bias of the SVM of a class that had no positive training example (its score is always this).
NO_POSITIVE_BIAS = -1000.0


def _bar(iterable: Any, desc: str, progress: bool) -> Any:
    """``iterable`` wrapped in a tqdm bar when ``progress`` is on."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="img", dynamic_ncols=True, leave=False)


# ----------------------------------------------------------------------------- data
class DetectionSet:
    """The images of a detection dataset with their targets and proposals.

    Targets and proposals are held in memory (small); images are read from ``dataset`` when
    needed, or held too with ``keep_images=True`` (the demo's 200 images take ~80 MB).

    Args:
        dataset: items ``(image uint8 [3, H, W], target dict)``, ``len(dataset)`` of them.
        proposals: ``(image, image_id) -> Tensor[M, 4]`` (e.g. a
            :class:`~sppnet.proposals.ProposalCache`), or a sequence of tensors in dataset order.
        max_proposals: keep only the first (highest-ranked) this many per image.
        keep_images: hold the decoded images in memory.
        progress: show a progress bar for the one pass over the dataset.
    """

    def __init__(
        self,
        dataset: Any,
        proposals: Callable[[Tensor, str], Tensor] | Sequence[Tensor],
        max_proposals: int | None = None,
        keep_images: bool = False,
        progress: bool = False,
    ) -> None:
        if not callable(proposals) and len(proposals) != len(dataset):
            raise ValueError(
                f"got {len(proposals)} proposal tensors for a dataset of {len(dataset)} images"
            )
        self.dataset = dataset
        self.targets: list[dict[str, Any]] = []
        self.proposals: list[Tensor] = []
        self._images: list[Tensor] | None = [] if keep_images else None
        for i in _bar(range(len(dataset)), "images", progress):
            image, target = dataset[i]
            boxes = proposals(image, target["image_id"]) if callable(proposals) else proposals[i]
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(
                    f"proposals of image {target['image_id']!r} must be Tensor[M, 4], got "
                    f"{tuple(boxes.shape)}"
                )
            self.proposals.append(boxes[:max_proposals].float())
            self.targets.append(target)
            if self._images is not None:
                self._images.append(image)

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Tensor:
        """The image ``index``, Tensor[3, H, W] uint8."""
        if self._images is not None:
            return self._images[index]
        return self.dataset[index][0]

    def positives(self, index: int) -> tuple[Tensor, Tensor]:
        """Ground-truth ``(boxes [G, 4] float32, labels [G])`` of an image, difficult ones left out
        (as in the paper's training)."""
        return _positives(self.targets[index])


def _positives(target: dict[str, Any]) -> tuple[Tensor, Tensor]:
    boxes, labels = target["boxes"].float(), target["labels"]
    difficult = target.get("difficult")
    if difficult is not None and difficult.numel():
        keep = ~difficult.bool()
        boxes, labels = boxes[keep], labels[keep]
    return boxes, labels


# ----------------------------------------------------------------------------- stage 1: cache
class FeatureCache:
    """Per image and scale, the trunk's conv map ``Tensor[C, h, w]`` in a reduced dtype.

    Build with :meth:`build`; :meth:`features` assembles any subset of images as
    :class:`~sppnet.models.detector.MultiScaleFeatures` for ``pool_windows``.
    """

    def __init__(self) -> None:
        self.maps: list[list[Tensor]] = []  # [image][scale] -> Tensor[C, h, w]
        self.factors: list[Tensor] = []  # [image] -> Tensor[S, 2]
        self.image_sizes: list[tuple[int, int]] = []

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        detector: SPPNetDetector,
        data: DetectionSet,
        dtype: torch.dtype = torch.float16,
        progress: bool = False,
        trunk: TrunkPrefixCache | None = None,
    ) -> FeatureCache:
        """Run the trunk once per image and scale (eval mode) and keep the maps in ``dtype``.

        With ``trunk`` (a :class:`~sppnet.engine.prefix_cache.TrunkPrefixCache` of this
        detector), the trunk's frozen first blocks are taken from, or added to, that cache.

        Under ``torchrun`` each rank computes the maps of its shard of the images
        (:func:`~sppnet.engine.distributed.shard`), then the shards are exchanged so that every
        rank holds the whole cache (the fine-tuning sampler may give any rank any image).
        """
        was_training = detector.training
        detector.eval()
        entries: dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]] = {}
        try:
            for i in _bar(shard(range(len(data))), "conv features", progress):
                if trunk is None:
                    feats = detector.compute_features([data.image(i)])
                else:
                    per_scale = [trunk.features([i], s) for s in detector.config.scales]
                    feats = MultiScaleFeatures(
                        [f.maps[0] for f in per_scale],
                        [f.factors[0] for f in per_scale],
                        per_scale[0].image_sizes,
                    )
                entries[i] = (
                    [m[0].to(dtype) for m in feats.maps],
                    torch.stack([f[0] for f in feats.factors]),
                    feats.image_sizes[0],
                )
        finally:
            detector.train(was_training)
        if get_world_size() > 1:
            entries = _exchange_shards(entries, device=next(detector.parameters()).device)
        cache = cls()
        for i in range(len(data)):
            maps, factors, size = entries[i]
            cache.maps.append(maps)
            cache.factors.append(factors)
            cache.image_sizes.append(size)
        return cache

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached maps."""
        return sum(m.numel() * m.element_size() for per_image in self.maps for m in per_image)

    def features(
        self,
        indices: Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> MultiScaleFeatures:
        """The features of the images ``indices`` (maps cast to ``dtype``, on ``device``)."""
        num_scales = len(self.maps[indices[0]])
        maps = [
            _pad_stack([self.maps[i][k].to(device=device, dtype=dtype) for i in indices])
            for k in range(num_scales)
        ]
        factors = [
            torch.stack([self.factors[i][k] for i in indices]).to(device) for k in range(num_scales)
        ]
        return MultiScaleFeatures(maps, factors, [self.image_sizes[i] for i in indices])


def _exchange_shards(
    entries: dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]], device: torch.device
) -> dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]]:
    """Every rank's cache entries, merged; tensors travel through host memory (pickled by
    ``all_gather_object``, which cannot carry one rank's GPU tensors to another) and come back
    on ``device``."""
    host = {
        i: ([m.to("cpu") for m in maps], factors.to("cpu"), size)
        for i, (maps, factors, size) in entries.items()
    }
    merged: dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]] = {}
    for part in all_gather_object(host):
        for i, (maps, factors, size) in part.items():
            merged[i] = ([m.to(device) for m in maps], factors.to(device), size)
    return merged


# ----------------------------------------------------------------------------- gradient stages
@dataclass
class StageLog:
    """What a stage did: its name, seconds, per-step or per-round records, and facts."""

    name: str
    seconds: float = 0.0
    records: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "info": self.info,
            "records": self.records,
        }


class _ImageIndices(Dataset):
    """The map-style dataset the Trainer iterates: item ``i`` is the image index ``i``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def _as_list(batch: list[int]) -> list[int]:
    return [int(i) for i in batch]


def _targets(data: DetectionSet, batch: Sequence[int], device: torch.device):
    out = []
    for i in batch:
        boxes, labels = data.positives(i)
        out.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return out


@contextlib.contextmanager
def _only_trainable(model: nn.Module, params: Sequence[nn.Parameter]):
    """Within the block, only ``params`` require grad (so DDP sees no unused parameter)."""
    saved = {p: p.requires_grad for p in model.parameters()}
    wanted = {id(p) for p in params}
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
        yield
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)


def _read_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "loss" in entry and "step" in entry:
            records.append({k: v for k, v in entry.items() if k == "step" or k.startswith("loss")})
    return records


def _fit(
    name: str,
    detector: SPPNetDetector,
    step: Callable[[nn.Module, list[int]], dict[str, Tensor]],
    param_groups: list[dict[str, Any]],
    num_images: int,
    epochs: int,
    cfg: TrainingConfig,
    output_dir: str | os.PathLike[str],
    resume: bool,
    progress: bool,
) -> StageLog:
    """Run one gradient stage on :class:`~sppnet.engine.trainer.Trainer` (checkpoints under
    ``output_dir/name``, resume, SIGINT, non-finite loss); SGD with momentum and weight decay,
    learning rates divided by 10 after ``lr_decay_at`` of the steps."""
    from sppnet.engine.trainer import TrainConfig, Trainer

    log = StageLog(name)
    start = time.perf_counter()
    params = [p for g in param_groups for p in g["params"]]
    optimizer = torch.optim.SGD(
        param_groups,
        lr=param_groups[0]["lr"],
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
    trainer = Trainer(
        detector,
        optimizer,
        step,
        _ImageIndices(num_images),
        TrainConfig(
            output_dir=Path(output_dir) / name,
            batch_size=min(cfg.images_per_batch, num_images),
            epochs=epochs,
            seed=cfg.seed,
            checkpoint_every=0,
            keep_last=1,
            log_every=max(1, min(10, num_images // cfg.images_per_batch)),
            resume=resume,
            progress=progress,
        ),
        collate_fn=_as_list,
        model_config=detector.checkpoint_config(),
    )
    decay_step = max(1, math.ceil(cfg.lr_decay_at * trainer.total_steps))
    trainer.scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [decay_step], gamma=0.1)
    with _only_trainable(detector, params):
        result = trainer.fit()
    detector.eval()
    log.seconds = time.perf_counter() - start
    log.records = _read_log(Path(output_dir) / name / "log.jsonl")
    log.info.update(steps=result.step, metrics=result.metrics)
    if result.resumed_from is not None:
        log.info["resumed_from"] = str(result.resumed_from)
    if log.records:
        n = max(1, len(log.records) // 5)
        log.info["loss_first"] = sum(r["loss"] for r in log.records[:n]) / n
        log.info["loss_last"] = sum(r["loss"] for r in log.records[-n:]) / n
    return log


def _configure_sampling(detector: SPPNetDetector, cfg: TrainingConfig) -> None:
    detector.window_sampling = WindowSampling(
        windows_per_image=max(1, cfg.windows_per_batch // cfg.images_per_batch),
        fg_fraction=cfg.fg_fraction,
        fg_iou=cfg.fg_iou,
        bg_iou=(cfg.bg_iou_low, cfg.bg_iou_high),
    )


def _head_parameters(detector: SPPNetDetector, cfg: TrainingConfig) -> list[nn.Parameter]:
    """fc6/fc7/fc8, and the box regressor when the box loss is on."""
    modules = [detector.box_head, detector.box_predictor]
    if cfg.box_loss_weight > 0:
        if detector.box_regressor is None:
            raise ValueError(
                "train.box_loss_weight > 0 needs a box regressor (model.box_regression: true)"
            )
        modules.append(detector.box_regressor)
    return [p for m in modules for p in m.parameters()]


def _step_losses(losses: dict[str, Tensor], cfg: TrainingConfig) -> dict[str, Tensor]:
    """The loss a fine-tuning step minimises: fc8's cross-entropy, plus the weighted box loss
    when ``box_loss_weight`` > 0 (both then logged too)."""
    if cfg.box_loss_weight == 0:
        return {"loss": losses["loss_classifier"]}
    return {
        "loss": losses["loss_classifier"] + cfg.box_loss_weight * losses["loss_box_reg"],
        "loss_classifier": losses["loss_classifier"].detach(),
        "loss_box_reg": losses["loss_box_reg"].detach(),
    }


def finetune_fc(
    detector: SPPNetDetector,
    data: DetectionSet,
    cache: FeatureCache,
    cfg: TrainingConfig,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = False,
) -> StageLog:
    """Fine-tune fc6/fc7/fc8 on cached conv maps (trunk frozen), the paper's way.

    Checkpoints go to ``output_dir/finetune_fc`` (see :func:`_fit`).
    """
    if not isinstance(detector.box_predictor, SoftmaxHead):
        raise TypeError("finetune_fc needs the softmax head (fc8) as box_predictor")
    _configure_sampling(detector, cfg)
    device = next(detector.parameters()).device

    def step(model: nn.Module, batch: list[int]) -> dict[str, Tensor]:
        feats = cache.features(batch, device=device)
        props = [data.proposals[i].to(device) for i in batch]
        losses = model(None, props, _targets(data, batch, device), features=feats)
        return _step_losses(losses, cfg)

    params = _head_parameters(detector, cfg)
    return _fit(
        "finetune_fc",
        detector,
        step,
        [{"params": params, "lr": cfg.lr_fc}],
        len(data),
        cfg.epochs_fc,
        cfg,
        output_dir,
        resume,
        progress,
    )


def trunk_parameters(detector: SPPNetDetector, frozen_prefix: int) -> list[nn.Parameter]:
    """The trunk's parameters end-to-end fine-tuning trains: those of its ``body`` children
    after the first ``frozen_prefix``, batch norm excluded (it stays frozen)."""
    body = getattr(detector.backbone, "body", detector.backbone)
    params = []
    for child in list(body.children())[frozen_prefix:]:
        for m in child.modules():
            if not isinstance(m, nn.modules.batchnorm._BatchNorm):
                params += list(m.parameters(recurse=False))
    return params


def finetune_end_to_end(
    detector: SPPNetDetector,
    data: DetectionSet,
    cfg: TrainingConfig,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = False,
    trunk_cache: TrunkPrefixCache | None = None,
) -> StageLog:
    """Fine-tune the trunk too, back-propagating through ``roi_spp`` (beyond the paper).

    Each step computes the conv maps of ``images_per_batch`` images at one scale drawn at random
    from ``config.scales`` (the detector's training mode), samples windows as in
    :func:`finetune_fc`, and updates fc6/fc7/fc8 (``lr_e2e``) and the trunk's blocks after the
    first ``trunk_frozen_prefix`` (``lr_e2e_trunk``). Checkpoints go to ``output_dir/end_to_end``.
    The frozen blocks' output comes from ``trunk_cache`` (by default a new one, when
    ``cfg.trunk_cache_mb`` allows; see :mod:`sppnet.engine.prefix_cache`).
    """
    if not isinstance(detector.box_predictor, SoftmaxHead):
        raise TypeError("finetune_end_to_end needs the softmax head (fc8) as box_predictor")
    _configure_sampling(detector, cfg)
    device = next(detector.parameters()).device
    if trunk_cache is None:
        trunk_cache, cache_note = _trunk_cache(detector, data, cfg)
    else:
        cache_note = "on"

    def step(model: nn.Module, batch: list[int]) -> dict[str, Tensor]:
        props = [data.proposals[i].to(device) for i in batch]
        targets = _targets(data, batch, device)
        scales = cfg.train_scales or detector.config.scales
        scale = scales[int(torch.randint(len(scales), (1,)))] if len(scales) > 1 else scales[0]
        if trunk_cache is None:
            images = [data.image(i).to(device) for i in batch]
            feats = detector.compute_features(images, [scale])
        else:
            feats = trunk_cache.features(batch, scale)
        losses = model(None, props, targets, features=feats)
        return _step_losses(losses, cfg)

    head = _head_parameters(detector, cfg)
    trunk = trunk_parameters(detector, cfg.trunk_frozen_prefix)
    log = _fit(
        "end_to_end",
        detector,
        step,
        [{"params": head, "lr": cfg.lr_e2e}, {"params": trunk, "lr": cfg.lr_e2e_trunk}],
        len(data),
        cfg.epochs_e2e,
        cfg,
        output_dir,
        resume,
        progress,
    )
    log.info["trunk_parameters"] = sum(p.numel() for p in trunk)
    log.info["trunk_cache"] = cache_note
    if trunk_cache is not None:
        log.info["trunk_cache"] = (
            f"{len(trunk_cache)} entries, {trunk_cache.nbytes / 2**20:.0f} MiB, "
            f"{trunk_cache.hits} hits, {trunk_cache.misses} misses"
        )
    return log


def _trunk_cache(
    detector: SPPNetDetector, data: DetectionSet, cfg: TrainingConfig
) -> tuple[TrunkPrefixCache | None, str]:
    """The frozen-prefix cache for end-to-end fine-tuning, or None and the reason it is off."""
    if cfg.trunk_cache_mb == 0:
        return None, "off (trunk_cache_mb = 0)"
    if cfg.trunk_frozen_prefix == 0:
        return None, "off (no frozen prefix)"
    try:
        cache = TrunkPrefixCache(
            detector, data.image, cfg.trunk_frozen_prefix, cfg.trunk_cache_mb * 2**20
        )
    except TypeError as err:  # a trunk whose body cannot be split: run it whole each step
        return None, f"off ({err})"
    return cache, "on"


# ----------------------------------------------------------------------------- SVMs
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
    for i in _bar(range(len(data)), "svm features", progress):
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


# ----------------------------------------------------------------------------- box regression
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
    use_pool5 = detector.config.box_regression_input == "pool5"
    xs, ts, cs = [], [], []
    try:
        for i in _bar(range(len(data)), "bbox features", progress):
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
            xs.append(pooled if use_pool5 else detector.box_head(pooled))
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


# ----------------------------------------------------------------------------- the whole run
@dataclass
class TrainedHeads:
    """The scoring heads a training run produced (the softmax fc8 and/or the SVMs)."""

    softmax: SoftmaxHead | None = None
    svm: LinearSVMs | None = None
    logs: list[StageLog] = field(default_factory=list)


def train_detector(
    detector: SPPNetDetector,
    data: DetectionSet,
    cfg: TrainingConfig,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = False,
) -> TrainedHeads:
    """Run the stages ``cfg.stages`` names, in the paper's order.

    Gradient stages checkpoint under ``output_dir/<stage>`` and, with ``resume``, continue from
    there (a finished stage is restored, not re-run). Leaves ``detector`` in eval mode with the
    head its ``config.scoring`` names installed (the SVMs when ``scoring == "svm"``, both fused
    for ``"softmax+svm"``, else fc8).
    Returns both heads and the logs.
    """
    torch.manual_seed(cfg.seed)
    heads = TrainedHeads()
    dtype = _DTYPES[cfg.cache_dtype]
    wanted_scoring = detector.config.scoring
    if isinstance(detector.box_predictor, SoftmaxSVMFusion):
        detector.set_box_predictor(detector.box_predictor.softmax)
    if not isinstance(detector.box_predictor, SoftmaxHead):
        device = next(detector.parameters()).device
        fc8 = SoftmaxHead(detector.representation_size, detector.config.num_classes)
        detector.set_box_predictor(fc8.to(device))
    cache: FeatureCache | None = None
    # One frozen-prefix cache serves the conv-map caches and end-to-end fine-tuning alike.
    trunk = _trunk_cache(detector, data, cfg)[0] if "end_to_end" in cfg.stages else None

    def fresh_cache() -> FeatureCache:
        t = time.perf_counter()
        c = FeatureCache.build(detector, data, dtype, progress, trunk=trunk)
        log = StageLog("feature_cache", time.perf_counter() - t)
        log.info.update(bytes=c.nbytes, dtype=cfg.cache_dtype, images=len(c))
        heads.logs.append(log)
        return c

    for stage in TrainingConfig._STAGES:
        if stage not in cfg.stages:
            continue
        if stage == "end_to_end":
            log = finetune_end_to_end(detector, data, cfg, output_dir, resume, progress, trunk)
            heads.logs.append(log)
            cache = None  # the trunk changed
            continue
        if cache is None:
            cache = fresh_cache()
        if stage == "finetune_fc":
            heads.logs.append(finetune_fc(detector, data, cache, cfg, output_dir, resume, progress))
        elif stage == "svm":
            svms, log = train_svms(detector, data, cache, cfg, progress)
            heads.svm = svms
            heads.logs.append(log)
        elif stage == "box_regression":
            heads.logs.append(train_box_regressor(detector, data, cache, cfg, progress))
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


@torch.no_grad()
def predict(
    detector: SPPNetDetector,
    data: DetectionSet,
    progress: bool = False,
    fuse: bool = True,
) -> tuple[list[dict[str, Tensor]], dict[str, float]]:
    """Detections for every image of ``data`` (eval mode), and the seconds spent per stage
    (``conv``, ``pool``, ``fc`` summed over images, ``images``). With ``fuse`` an inference copy
    of the detector runs (:func:`~sppnet.models.fuse.fuse_for_inference`: the same function
    up to float rounding, ~1.6x faster conv layers on CPU)."""
    detector = fuse_for_inference(detector) if fuse else detector.eval()
    out = []
    times = {"conv": 0.0, "pool_fc_nms": 0.0, "images": 0.0}
    for i in _bar(range(len(data)), "detect", progress):
        t0 = time.perf_counter()
        feats = detector.compute_features([data.image(i)])
        t1 = time.perf_counter()
        out.append(
            {
                k: v.cpu()
                for k, v in detector.detect_from_features(feats, [data.proposals[i]])[0].items()
            }
        )
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

    Returns:
        ``({variant: per-image detections}, seconds)``; variants are named ``"<head>"`` (with
        box regression) and ``"<head>/no_bbox"``; ``seconds`` holds ``conv`` and ``rest`` totals.
    """
    from sppnet.models.detector import DetectionPostprocess

    detector = fuse_for_inference(detector) if fuse else detector.eval()
    cfg = detector.config
    post = {}
    for name, head in heads.items():
        threshold = cfg.svm_score_threshold if isinstance(head, LinearSVMs) else cfg.score_threshold
        post[name] = DetectionPostprocess(
            threshold,
            cfg.nms_threshold,
            cfg.detections_per_image,
            cfg.min_box_size,
            cfg.box_voting_iou,
        )
    regress = [r for r in box_regression if not r or detector.box_regressor is not None]
    out: dict[str, list[dict[str, Tensor]]] = {
        (name if r else f"{name}/no_bbox"): [] for name in heads for r in regress
    }
    times = {"conv": 0.0, "rest": 0.0}
    for i in _bar(range(len(data)), "detect", progress):
        t0 = time.perf_counter()
        feats = detector.compute_features([data.image(i)])
        t1 = time.perf_counter()
        props = data.proposals[i].to(feats.maps[0].device)
        pooled = detector.pool_windows(feats, [props]).float()
        x = detector.box_head(pooled)
        m = props.shape[0]
        boxes_by_mode = {False: None, True: None}
        for r in regress:
            if not r:
                boxes_by_mode[r] = props[:, None, :].expand(m, cfg.num_classes, 4)
            else:
                assert detector.box_regressor is not None
                reg_in = pooled if cfg.box_regression_input == "pool5" else x
                deltas = detector.box_regressor(reg_in).reshape(m, -1)
                boxes_by_mode[r] = detector.box_coder.decode(deltas, props).view(m, -1, 4)
        for name, head in heads.items():
            scores = head.class_scores(x)
            for r in regress:
                result = post[name](boxes_by_mode[r], scores, feats.image_sizes[0])
                out[name if r else f"{name}/no_bbox"].append(
                    {k: v.cpu() for k, v in result.items()}
                )
        times["conv"] += t1 - t0
        times["rest"] += time.perf_counter() - t1
    return out, times
