"""The model's configuration: :class:`DetectorConfig` (everything that rebuilds an
:class:`~sppnet.models.detector.SPPNetDetector`; what ``save_pretrained`` writes next to the
weights) and the named presets.

Presets (:func:`preset`):

- ``"paper"``: the paper's detector on PASCAL-size images: levels (6, 3, 2, 1), fc6/fc7 of 4096,
  one scale of 688 px (``"paper5"`` gives the five scales 480, 576, 688, 864, 1200), windows
  assigned to the scale where their area is closest to 224 x 224.
- ``"demo"``: fast defaults for the ~350 px demo images on 2 CPU cores: the stride-16 MobileNetV2
  trunk, fc6/fc7 of 512, one scale of 480 px (``"demo5"``: the paper's five rescaled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sppnet.config._serializable import Serializable

__all__ = [
    "PAPER_SCALES",
    "PAPER_SINGLE_SCALE",
    "PAPER_TARGET_SIDE",
    "SCORING_HEADS",
    "DetectorConfig",
    "preset",
    "scaled_scales",
]

#: The paper's five scales (shorter side, pixels); its single scale is 688.
PAPER_SCALES: tuple[int, ...] = (480, 576, 688, 864, 1200)
#: The paper's single scale.
PAPER_SINGLE_SCALE = 688
#: Side of the square whose area each window is matched to when choosing its scale.
PAPER_TARGET_SIDE = 224
#: The values of ``DetectorConfig.scoring``.
SCORING_HEADS: tuple[str, ...] = ("softmax", "svm", "softmax+svm")


def scaled_scales(base: int, scales: Sequence[int] = PAPER_SCALES) -> tuple[int, ...]:
    """The paper's scales rescaled so that its single scale (688) becomes ``base``.

    Used for the demo images, which are about half the size of PASCAL's: ``scaled_scales(480)`` is
    ``(335, 402, 480, 603, 837)``.
    """
    if base <= 0:
        raise ValueError(f"base must be a positive number of pixels, got {base}")
    return tuple(round(s * base / PAPER_SINGLE_SCALE) for s in scales)


@dataclass
class DetectorConfig(Serializable):
    """Everything needed to rebuild an :class:`~sppnet.models.detector.SPPNetDetector`.

    Attributes:
        num_classes: object classes, background excluded (labels are 1..num_classes).
        class_names: optional display names, ``len == num_classes``.
        category_ids: optional dataset category ids of labels 1..num_classes (e.g. a COCO file's
            ids, which need not be contiguous), for writing COCO results files.
        backbone: a name known to :func:`sppnet.models.create_backbone`.
        backbone_kwargs: family options passed to ``create_backbone`` (e.g. a stride-16 cut).
        backbone_weights: weights used when the model is *built fresh* (``None``, ``"imagenet"``
            or a file). ``from_pretrained`` ignores it and loads the saved weights instead.
        levels: SPP pyramid levels, e.g. (6, 3, 2, 1) (50 bins).
        pool_mode: ``"max"`` (the paper) or ``"avg"``.
        scales: shorter-side lengths in pixels, one conv pass per image and scale.
        max_size: cap on the longer side after resizing (pixels).
        target_side: a window is pooled at the scale where its scaled area is closest to
            ``target_side ** 2`` (224 in the paper).
        fc_dims: widths of fc6, fc7, ...; ``()`` pools straight into the scoring heads.
        dropout: dropout after each fc layer (training only).
        scoring: ``"softmax"`` (fc8, num_classes + 1 outputs), ``"svm"`` (per-class linear SVMs)
            or ``"softmax+svm"`` (both, fused:
            :class:`~sppnet.models.score_fusion.SoftmaxSVMFusion`).
        box_regression: whether a per-class box regressor is part of the model.
        box_regression_input: ``"pool5"`` (the paper: the pooled conv features) or ``"fc7"``.
        box_coder_weights: (wx, wy, ww, wh) the R-CNN deltas are multiplied by.
        nms_threshold: IoU above which a lower-scored box of the same class is suppressed.
        box_voting_iou: if set, each box NMS keeps moves to the score-weighted mean of the
            candidates of its class overlapping it by at least this IoU
            (:func:`~sppnet.ops.box_voting.box_voting`); ``None`` (default) leaves it.
        score_threshold: softmax probability below which a detection is dropped.
        svm_score_threshold: the same for SVM margins (R-CNN's test threshold is -1).
        detections_per_image: cap on the detections returned per image.
        min_box_size: detections narrower or lower than this (pixels) are dropped.
    """

    num_classes: int = 20
    class_names: list[str] | None = None
    category_ids: list[int] | None = None
    backbone: str = "mobilenet_v2_c4"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = "imagenet"
    levels: tuple[int, ...] = (6, 3, 2, 1)
    pool_mode: str = "max"
    scales: tuple[int, ...] = (PAPER_SINGLE_SCALE,)
    max_size: int = 2000
    target_side: float = float(PAPER_TARGET_SIDE)
    fc_dims: tuple[int, ...] = (4096, 4096)
    dropout: float = 0.5
    scoring: str = "softmax"
    box_regression: bool = True
    box_regression_input: str = "pool5"
    box_coder_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    nms_threshold: float = 0.3
    box_voting_iou: float | None = None
    score_threshold: float = 0.01
    svm_score_threshold: float = -1.0
    detections_per_image: int = 100
    min_box_size: float = 1.0

    def __post_init__(self) -> None:
        self.levels = tuple(int(n) for n in self.levels)
        self.scales = tuple(int(s) for s in self.scales)
        self.fc_dims = tuple(int(d) for d in self.fc_dims)
        self.box_coder_weights = tuple(float(w) for w in self.box_coder_weights)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field that is out of range."""
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but num_classes is "
                f"{self.num_classes}"
            )
        if self.category_ids is not None and len(self.category_ids) != self.num_classes:
            raise ValueError(
                f"category_ids has {len(self.category_ids)} ids but num_classes is "
                f"{self.num_classes}"
            )
        if not self.levels or any(n < 1 for n in self.levels):
            raise ValueError(f"levels must be positive ints, got {self.levels}")
        if self.pool_mode not in ("max", "avg"):
            raise ValueError(f"pool_mode must be 'max' or 'avg', got {self.pool_mode!r}")
        if not self.scales or any(s < 1 for s in self.scales):
            raise ValueError(f"scales must be positive pixel sizes, got {self.scales}")
        if self.max_size < max(self.scales):
            raise ValueError(
                f"max_size ({self.max_size}) is smaller than the largest scale ({max(self.scales)})"
            )
        if self.target_side <= 0:
            raise ValueError(f"target_side must be > 0, got {self.target_side}")
        if any(d < 1 for d in self.fc_dims):
            raise ValueError(f"fc_dims must be positive, got {self.fc_dims}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.scoring not in SCORING_HEADS:
            raise ValueError(f"scoring must be one of {SCORING_HEADS}, got {self.scoring!r}")
        if self.box_regression_input not in ("pool5", "fc7"):
            raise ValueError(
                f"box_regression_input must be 'pool5' or 'fc7', got {self.box_regression_input!r}"
            )
        if len(self.box_coder_weights) != 4 or any(w <= 0 for w in self.box_coder_weights):
            raise ValueError(
                f"box_coder_weights must be 4 positive numbers, got {self.box_coder_weights}"
            )
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {self.nms_threshold}")
        if self.box_voting_iou is not None and not 0.0 < self.box_voting_iou <= 1.0:
            raise ValueError(f"box_voting_iou must be in (0, 1] or None, got {self.box_voting_iou}")
        if self.detections_per_image < 1:
            raise ValueError(f"detections_per_image must be >= 1, got {self.detections_per_image}")
        if self.min_box_size < 0:
            raise ValueError(f"min_box_size must be >= 0, got {self.min_box_size}")


def preset(name: str, **overrides: Any) -> DetectorConfig:
    """A named :class:`DetectorConfig`, with keyword overrides.

    ``"paper"``: levels (6, 3, 2, 1), fc 4096/4096, one scale of 688 px, target side 224.
    ``"paper5"``: the same with the five scales 480, 576, 688, 864, 1200.
    ``"demo"``: the stride-16 MobileNetV2 trunk, fc 512/512, one scale of 480 px, target side
    ``224 * 480 / 688``. ``"demo5"``: the same with the paper's five scales rescaled by 480/688.
    """
    base: dict[str, Any]
    if name in ("paper", "paper5"):
        base = dict(
            levels=(6, 3, 2, 1),
            fc_dims=(4096, 4096),
            scales=PAPER_SCALES if name == "paper5" else (PAPER_SINGLE_SCALE,),
            target_side=float(PAPER_TARGET_SIDE),
        )
    elif name in ("demo", "demo5"):
        demo_scale = 480
        base = dict(
            backbone="mobilenet_v2_c4",
            levels=(6, 3, 2, 1),
            fc_dims=(512, 512),
            scales=scaled_scales(demo_scale) if name == "demo5" else (demo_scale,),
            max_size=1400,
            target_side=PAPER_TARGET_SIDE * demo_scale / PAPER_SINGLE_SCALE,
            num_classes=10,
        )
    else:
        raise ValueError(f"unknown preset {name!r}; known: 'paper', 'paper5', 'demo', 'demo5'")
    base.update(overrides)
    return DetectorConfig(**base)
