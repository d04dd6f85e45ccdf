"""The detector's training stages: :class:`TrainingConfig`, the ``train`` section of a config
file, which drives :mod:`sppnet.engine.detection` (the paper's stages plus the end-to-end
fine-tuning this project adds)."""

from __future__ import annotations

from dataclasses import dataclass

from sppnet.config._serializable import Serializable
from sppnet.utils.amp import check_amp

__all__ = ["TRAINING_STAGES", "TrainingConfig"]

#: The stages :func:`sppnet.engine.detection.train_detector` knows, in the order they run.
TRAINING_STAGES: tuple[str, ...] = ("finetune_fc", "end_to_end", "svm", "box_regression")


@dataclass
class TrainingConfig(Serializable):
    """The training stages of :mod:`sppnet.engine.detection`.

    Window sampling (fine-tuning): foreground IoU >= ``fg_iou``, background IoU in
    [``bg_iou_low``, ``bg_iou_high``); each mini-batch holds ``windows_per_batch`` windows from
    ``images_per_batch`` images, a ``fg_fraction`` of them foreground (the paper: 25%).

    Attributes:
        stages: which stages run, in order, from ``"finetune_fc"``, ``"end_to_end"``, ``"svm"``,
            ``"box_regression"``.
        epochs_fc / lr_fc: fine-tuning of fc6/fc7/fc8 on cached conv maps (trunk frozen).
        epochs_e2e / lr_e2e / lr_e2e_trunk: end-to-end fine-tuning through ``roi_spp`` into the
            trunk (the trunk's learning rate is separate; batch norm stays frozen).
        trunk_frozen_prefix: the first N modules of the trunk stay frozen end to end.
        train_scales: end to end, each step's images are resized to one of these shorter sides
            (pixels), drawn at random (Fast R-CNN's multi-scale training, detectron2's
            ``MIN_SIZE_TRAIN``); ``()`` draws from the model's own ``scales``.
        trunk_cache_mb: end to end, the frozen first blocks' output is computed once per image
            and scale and kept, up to this many MiB (0: recompute it every step); see
            :mod:`sppnet.engine.prefix_cache`.
        box_loss_weight: weight of the box regressor's smooth-L1 loss beside fc8's
            cross-entropy in both fine-tuning stages (Fast R-CNN's multi-task loss; its lambda
            is 1). 0 (the default) is the paper's classification-only fine-tuning, with the
            regressor fitted afterwards by the ``box_regression`` stage.
        lr_decay_at: fraction of each stage's steps after which its learning rate drops 10x.
        weight_decay / momentum: SGD.
        svm_c / svm_pos_weight / svm_bias_multiplier / svm_feature_norm: the released code's
            liblinear settings: C = 1e-3, positive weight 2, bias multiplier 10, features scaled to
            mean norm 20.
        svm_neg_iou: negatives have IoU below this with every positive of the class (0.3).
        svm_neg_nms: negatives overlapping a higher-ranked negative by more than this are dropped.
        svm_hard_threshold: a negative is hard when its score exceeds this (R-CNN: -1.0001).
        svm_rounds: hard-negative mining rounds after the first fit.
        svm_solver: ``"liblinear"`` (scikit-learn; the default: faster on CPU, see
            docs/detector.md) or ``"torch"`` (batched over classes, on the model's device).
        svm_max_negatives_per_image: random negatives per image used to start the mining.
        bbox_iou: windows with IoU >= this with a ground-truth box train its regressor.
        bbox_lambda: ridge strength (the released code: 4000 with features at mean norm 20).
        max_proposals: proposals per image used in training (the highest ranked first).
        cache_dtype: dtype of the cached conv maps (``"float16"`` halves the memory).
        seed: random seed of the window sampler and the initialisation of new layers.
        augment_prob: end to end, the probability that a step's batch is augmented
            photometrically (:func:`sppnet.data.augment.build_augment`); 0 (the default) turns
            augmentation off and draws nothing from the RNG, so training is unchanged. An
            augmented batch is read from the images and bypasses the frozen-prefix cache. The
            other stages fit on cached conv maps of the unaugmented images and ignore it.
        augment_brightness / augment_contrast / augment_saturation / augment_hue: colour jitter
            spreads (factors drawn from ``[1 - x, 1 + x]``; the hue shift from ``[-x, x]``
            turns); 0 turns a part off.
        augment_greyscale / augment_invert: probabilities of greyscale and of polarity
            inversion (``255 - image``) in an augmented batch.
        augment_hflip: also mirror augmented images with probability 1/2 (their proposals and
            ground-truth boxes with them); off for classes without mirror symmetry (digits).
        augment_blur / augment_noise: probabilities of a Gaussian blur (sigma 0.5-1.5 px) and of
            Gaussian noise (sigma 2-10 grey levels) in an augmented batch; 0 (the default) draws
            nothing for them.
        augment_mixup: probability that an image of an augmented batch is mixed with another
            training image (:func:`sppnet.data.augment.mixup`, weight 0.3-0.7, the other image
            resized to its size), both images' objects kept as targets and both images'
            proposals used; 0 (the default) draws nothing for it.
        augment_fade: probability that an image of an augmented batch has its objects faded
            (:func:`sppnet.data.augment.fade_objects`: each object's contrast against its
            surroundings scaled by a factor drawn from 0.15-1); 0 (the default) draws nothing.
        amp: mixed precision of the gradient stages (``"off"``, ``"bf16"``, ``"fp16"``: see
            :data:`sppnet.utils.amp.AMP_MODES`); the feature cache, the SVMs and the box
            regression always run in float32.
    """

    stages: tuple[str, ...] = ("finetune_fc", "svm", "box_regression")
    epochs_fc: int = 10
    lr_fc: float = 1e-3
    epochs_e2e: int = 0
    lr_e2e: float = 1e-3
    lr_e2e_trunk: float = 1e-4
    trunk_frozen_prefix: int = 4
    train_scales: tuple[int, ...] = ()
    trunk_cache_mb: int = 1024
    box_loss_weight: float = 0.0
    lr_decay_at: float = 0.75
    weight_decay: float = 5e-4
    momentum: float = 0.9
    images_per_batch: int = 2
    windows_per_batch: int = 128
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou_low: float = 0.1
    bg_iou_high: float = 0.5
    svm_c: float = 1e-3
    svm_pos_weight: float = 2.0
    svm_bias_multiplier: float = 10.0
    svm_feature_norm: float = 20.0
    svm_neg_iou: float = 0.3
    svm_neg_nms: float = 0.7
    svm_hard_threshold: float = -1.0001
    svm_rounds: int = 2
    svm_solver: str = "liblinear"
    svm_max_negatives_per_image: int = 200
    bbox_iou: float = 0.5
    bbox_lambda: float = 4000.0
    max_proposals: int = 2000
    cache_dtype: str = "float16"
    seed: int = 0
    amp: str = "off"
    augment_prob: float = 0.0
    augment_brightness: float = 0.3
    augment_contrast: float = 0.4
    augment_saturation: float = 0.5
    augment_hue: float = 0.1
    augment_greyscale: float = 0.1
    augment_invert: float = 0.2
    augment_hflip: bool = False
    augment_blur: float = 0.0
    augment_noise: float = 0.0
    augment_mixup: float = 0.0
    augment_fade: float = 0.0

    def __post_init__(self) -> None:
        self.stages = tuple(self.stages)
        self.train_scales = tuple(int(s) for s in self.train_scales)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field that is out of range."""
        unknown = [s for s in self.stages if s not in TRAINING_STAGES]
        if unknown:
            raise ValueError(
                f"unknown stage(s) {unknown}; known stages are {list(TRAINING_STAGES)}"
            )
        if not 0.0 < self.fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction must be in (0, 1], got {self.fg_fraction}")
        if not 0.0 <= self.bg_iou_low < self.bg_iou_high <= self.fg_iou <= 1.0:
            raise ValueError(
                "need 0 <= bg_iou_low < bg_iou_high <= fg_iou <= 1, got "
                f"{self.bg_iou_low}, {self.bg_iou_high}, {self.fg_iou}"
            )
        if self.images_per_batch < 1 or self.windows_per_batch < 1:
            raise ValueError("images_per_batch and windows_per_batch must be >= 1")
        if self.svm_solver not in ("torch", "liblinear"):
            raise ValueError(f"svm_solver must be 'torch' or 'liblinear', got {self.svm_solver!r}")
        if self.cache_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(
                f"cache_dtype must be float16, bfloat16 or float32, got {self.cache_dtype!r}"
            )
        if any(s < 1 for s in self.train_scales):
            raise ValueError(f"train_scales must be positive pixel sizes, got {self.train_scales}")
        if self.trunk_cache_mb < 0:
            raise ValueError(f"trunk_cache_mb must be >= 0, got {self.trunk_cache_mb}")
        if self.max_proposals < 1:
            raise ValueError(f"max_proposals must be >= 1, got {self.max_proposals}")
        if not self.box_loss_weight >= 0.0:
            raise ValueError(f"box_loss_weight must be >= 0, got {self.box_loss_weight}")
        check_amp(self.amp, "amp")
        if not 0.0 < self.lr_decay_at <= 1.0:
            raise ValueError(f"lr_decay_at must be in (0, 1], got {self.lr_decay_at}")
        self._validate_augment()

    def _validate_augment(self) -> None:
        for name, top in (
            ("augment_prob", 1.0),
            ("augment_brightness", 1.0),
            ("augment_contrast", 1.0),
            ("augment_saturation", 1.0),
            ("augment_hue", 0.5),
            ("augment_greyscale", 1.0),
            ("augment_invert", 1.0),
            ("augment_blur", 1.0),
            ("augment_noise", 1.0),
            ("augment_mixup", 1.0),
            ("augment_fade", 1.0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number in [0, {top}], got {value!r}")
            if not 0.0 <= value <= top:
                raise ValueError(f"{name} must be in [0, {top}], got {value}")
        if not isinstance(self.augment_hflip, bool):
            raise ValueError(f"augment_hflip must be true or false, got {self.augment_hflip!r}")
        # The parts that are off by default act only inside augmented batches: asked for while
        # augment_prob is 0 they would silently do nothing.
        if self.augment_prob == 0:
            for name in ("augment_blur", "augment_noise", "augment_mixup", "augment_fade"):
                if getattr(self, name) > 0:
                    raise ValueError(
                        f"{name} = {getattr(self, name)} acts only on augmented batches: "
                        "set augment_prob > 0 too"
                    )
