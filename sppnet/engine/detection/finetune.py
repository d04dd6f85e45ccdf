"""The gradient stages: fc6/fc7/fc8 fine-tuned on cached conv maps with the trunk frozen (the
paper's :func:`finetune_fc`), and the same loss back-propagated through ``roi_spp`` into the trunk
(:func:`finetune_end_to_end`, beyond the paper). Both run on :class:`sppnet.engine.trainer.Trainer`
(progress bar, logged losses, checkpoints with resume, SIGINT, non-finite loss, DDP under
torchrun).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from sppnet.config import TrainingConfig
from sppnet.data.augment import (
    FADE_FACTORS,
    MIXUP_WEIGHTS,
    AugmentConfig,
    Compose,
    build_augment,
    fade_objects,
    mixup,
    scale_boxes,
)
from sppnet.engine.detection.cache import FeatureCache
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.stage_log import StageLog
from sppnet.engine.distributed import get_world_size
from sppnet.engine.prefix_cache import TrunkPrefixCache
from sppnet.engine.tensorboard import TensorBoardLogger
from sppnet.engine.trainer import LoopConfig, Trainer
from sppnet.models.detector import SPPNetDetector
from sppnet.models.heads import SoftmaxHead
from sppnet.models.sampling import WindowSampling

__all__ = [
    "augmented_batch",
    "batch_augment",
    "finetune_end_to_end",
    "finetune_fc",
    "trunk_parameters",
    "trunk_prefix_cache",
    "window_sampling",
]


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


def _tensorboard_hooks(
    name: str, cfg: TrainingConfig, tensorboard_dir: Path | None
) -> list[TensorBoardLogger]:
    if tensorboard_dir is None:
        return []
    world = get_world_size()
    # Windows per step are nominal: an image with too few candidates gives fewer.
    counts = {
        "images": cfg.images_per_batch * world,
        "windows": cfg.windows_per_batch * world,
    }
    return [TensorBoardLogger(tensorboard_dir, name, counts)]


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
    tensorboard_dir: Path | None = None,
) -> StageLog:
    """Run one gradient stage on :class:`~sppnet.engine.trainer.Trainer` (checkpoints under
    ``output_dir/name``, resume, SIGINT, non-finite loss; TensorBoard scalars tagged ``name/...``
    in ``tensorboard_dir`` when given); SGD with momentum and weight decay, learning rates
    divided by 10 after ``lr_decay_at`` of the steps."""
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
        LoopConfig(
            output_dir=Path(output_dir) / name,
            batch_size=min(cfg.images_per_batch, num_images),
            epochs=epochs,
            seed=cfg.seed,
            checkpoint_every=0,
            keep_last=1,
            log_every=max(1, min(10, num_images // cfg.images_per_batch)),
            resume=resume,
            progress=progress,
            device=str(next(detector.parameters()).device),
            amp=cfg.amp,
        ),
        collate_fn=_as_list,
        model_config=detector.checkpoint_config(),
        hooks=_tensorboard_hooks(name, cfg, tensorboard_dir),
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


def window_sampling(cfg: TrainingConfig) -> WindowSampling:
    """The window sampler of the fine-tuning stages: ``windows_per_batch`` windows over
    ``images_per_batch`` images, ``fg_fraction`` foreground, the config's IoU ranges."""
    return WindowSampling(
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
    tensorboard_dir: Path | None = None,
) -> StageLog:
    """Fine-tune fc6/fc7/fc8 on cached conv maps (trunk frozen), the paper's way.

    Checkpoints go to ``output_dir/finetune_fc`` (see :func:`_fit`).
    """
    if not isinstance(detector.box_predictor, SoftmaxHead):
        raise TypeError("finetune_fc needs the softmax head (fc8) as box_predictor")
    sampling = window_sampling(cfg)
    device = next(detector.parameters()).device

    def step(model: nn.Module, batch: list[int]) -> dict[str, Tensor]:
        feats = cache.features(batch, device=device)
        props = [data.proposals[i].to(device) for i in batch]
        targets = _targets(data, batch, device)
        losses = model(None, props, targets, features=feats, sampling=sampling)
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
        tensorboard_dir,
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


def batch_augment(cfg: TrainingConfig) -> Compose | None:
    """The photometric augmentation of end-to-end batches the config asks for (its
    ``augment_*`` fields), or None when ``augment_prob`` is 0."""
    if cfg.augment_prob == 0:
        return None
    return build_augment(
        AugmentConfig(
            brightness=cfg.augment_brightness,
            contrast=cfg.augment_contrast,
            saturation=cfg.augment_saturation,
            hue=cfg.augment_hue,
            greyscale=cfg.augment_greyscale,
            invert=cfg.augment_invert,
            horizontal_flip=cfg.augment_hflip,
            blur=cfg.augment_blur,
            noise=cfg.augment_noise,
        )
    )


def augmented_batch(
    data: DetectionSet,
    batch: Sequence[int],
    augment: Compose,
    device: torch.device,
    mixup_prob: float = 0.0,
    fade_prob: float = 0.0,
) -> tuple[list[Tensor], list[Tensor], list[dict[str, Tensor]]]:
    """``(images, proposals, targets)`` of ``batch`` with each image augmented, drawing from the
    global torch RNG (which the Trainer seeds per step, so a resumed run draws the same).

    With probability ``mixup_prob`` an image is first mixed with another training image drawn
    at random (:func:`~sppnet.data.augment.mixup`, weight from ``MIXUP_WEIGHTS``): the other
    image's boxes and proposals are scaled onto it and appended to its own. With
    ``mixup_prob`` 0 nothing is drawn for it. Then, with probability ``fade_prob``, its
    objects are faded (:func:`~sppnet.data.augment.fade_objects`, one factor per object from
    ``FADE_FACTORS``); with ``fade_prob`` 0 nothing is drawn for it.

    A flip (``augment_hflip``) mirrors an image's proposals and ground-truth boxes with it:
    both go through the transform as one box tensor so they share the draw.
    """
    images, props, targets = [], [], []
    for i in batch:
        image = data.image(i)
        boxes, labels = data.positives(i)
        proposals = data.proposals[i]
        if mixup_prob > 0 and len(data) > 1 and float(torch.rand(())) < mixup_prob:
            image, boxes, labels, proposals = _mixed_with_another(
                data, i, image, boxes, labels, proposals
            )
        if fade_prob > 0 and len(boxes) and float(torch.rand(())) < fade_prob:
            low, high = FADE_FACTORS
            factors = low + (high - low) * torch.rand(len(boxes), dtype=torch.float64)
            image = fade_objects(image, boxes, factors.float())
        image, moved = augment(image, torch.cat([boxes, proposals]), torch.default_generator)
        images.append(image.to(device))
        targets.append({"boxes": moved[: len(boxes)].to(device), "labels": labels.to(device)})
        props.append(moved[len(boxes) :].to(device))
    return images, props, targets


def _mixed_with_another(
    data: DetectionSet, i: int, image: Tensor, boxes: Tensor, labels: Tensor, proposals: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Image ``i`` mixed with a random other image ``j != i`` of ``data``: the mixed image, and
    the boxes, labels and proposals of both (``j``'s scaled onto ``i``'s size)."""
    j = int(torch.randint(len(data) - 1, ()))
    j += j >= i
    low, high = MIXUP_WEIGHTS
    weight = low + (high - low) * float(torch.rand((), dtype=torch.float64))
    other = data.image(j)
    other_boxes, other_labels = data.positives(j)
    size_j, size_i = tuple(other.shape[-2:]), tuple(image.shape[-2:])
    mixed = mixup(image, other, weight)
    boxes = torch.cat([boxes, scale_boxes(other_boxes, size_j, size_i)])
    labels = torch.cat([labels, other_labels])
    proposals = torch.cat([proposals, scale_boxes(data.proposals[j], size_j, size_i)])
    return mixed, boxes, labels, proposals


def finetune_end_to_end(
    detector: SPPNetDetector,
    data: DetectionSet,
    cfg: TrainingConfig,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = False,
    trunk_cache: TrunkPrefixCache | None = None,
    tensorboard_dir: Path | None = None,
) -> StageLog:
    """Fine-tune the trunk too, back-propagating through ``roi_spp`` (beyond the paper).

    Each step computes the conv maps of ``images_per_batch`` images at one scale drawn at random
    from ``config.scales`` (the detector's training mode), samples windows as in
    :func:`finetune_fc`, and updates fc6/fc7/fc8 (``lr_e2e``) and the trunk's blocks after the
    first ``trunk_frozen_prefix`` (``lr_e2e_trunk``). Checkpoints go to ``output_dir/end_to_end``.
    The frozen blocks' output comes from ``trunk_cache`` (by default a new one, when
    ``cfg.trunk_cache_mb`` allows; see :mod:`sppnet.engine.prefix_cache`).

    With ``cfg.augment_prob`` > 0, each step draws (after its scale) whether its batch is
    augmented photometrically (:func:`batch_augment`); an augmented batch is computed from its
    augmented images, bypassing ``trunk_cache``. The stage log counts the augmented steps.
    """
    if not isinstance(detector.box_predictor, SoftmaxHead):
        raise TypeError("finetune_end_to_end needs the softmax head (fc8) as box_predictor")
    sampling = window_sampling(cfg)
    device = next(detector.parameters()).device
    if trunk_cache is None:
        trunk_cache, cache_note = trunk_prefix_cache(detector, data, cfg)
    else:
        cache_note = "on"
    augment = batch_augment(cfg)
    augmented_steps = [0]

    def step(model: nn.Module, batch: list[int]) -> dict[str, Tensor]:
        props = [data.proposals[i].to(device) for i in batch]
        targets = _targets(data, batch, device)
        scales = cfg.train_scales or detector.config.scales
        scale = scales[int(torch.randint(len(scales), (1,)))] if len(scales) > 1 else scales[0]
        # No draw at all when augmentation is off: the RNG stream stays the one of before.
        if augment is not None and float(torch.rand(())) < cfg.augment_prob:
            images, props, targets = augmented_batch(
                data, batch, augment, device, cfg.augment_mixup, cfg.augment_fade
            )
            feats = detector.compute_features(images, [scale])
            augmented_steps[0] += 1
        elif trunk_cache is None:
            images = [data.image(i).to(device) for i in batch]
            feats = detector.compute_features(images, [scale])
        else:
            feats = trunk_cache.features(batch, scale)
        losses = model(None, props, targets, features=feats, sampling=sampling)
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
        tensorboard_dir,
    )
    log.info["trunk_parameters"] = sum(p.numel() for p in trunk)
    log.info["trunk_cache"] = cache_note
    if augment is not None:
        log.info["augmented_steps"] = augmented_steps[0]
    if trunk_cache is not None:
        log.info["trunk_cache"] = (
            f"{len(trunk_cache)} entries, {trunk_cache.nbytes / 2**20:.0f} MiB, "
            f"{trunk_cache.hits} hits, {trunk_cache.misses} misses"
        )
    return log


def trunk_prefix_cache(
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
