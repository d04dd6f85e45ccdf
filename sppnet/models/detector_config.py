"""Configuration of :class:`~sppnet.models.detector.SPPNetDetector` and of its training stages.

Two dataclasses, both plain data with a lossless dict / JSON / YAML round trip:

- :class:`DetectorConfig` fully rebuilds the model (architecture, scales, post-processing). It is
  what ``save_pretrained`` writes next to the weights.
- :class:`TrainingConfig` drives :mod:`sppnet.engine.detection` (the paper's stages plus the
  end-to-end fine-tuning this project adds).

A training config file (``configs/*.yaml``) has the sections ``model`` (a :class:`DetectorConfig`),
``train`` (a :class:`TrainingConfig`) and ``data`` (free-form: dataset and proposal options read by
the CLI).

Presets (:func:`preset`):

- ``"paper"``: the paper's detector on PASCAL-size images: levels (6, 3, 2, 1), fc6/fc7 of 4096,
  one scale of 688 px (``scales="paper5"`` gives the five scales 480, 576, 688, 864, 1200), windows
  assigned to the scale where their area is closest to 224 x 224.
- ``"demo"``: fast defaults for the ~350 px demo images on 2 CPU cores: the stride-16 MobileNetV2
  trunk, fc6/fc7 of 512, one scale of 480 px.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PAPER_SCALES",
    "SCORING_HEADS",
    "DetectorConfig",
    "TrainingConfig",
    "load_config_file",
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


class _Serializable:
    """Dict / JSON / YAML round trip for the flat dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        cls.check_keys(data)
        kwargs = {}
        for key, value in data.items():
            default = names[key].default
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def check_keys(cls, data: Mapping[str, Any]) -> None:
        """Raise ValueError for keys that are not fields of this dataclass."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown key(s) {unknown}; known keys are {sorted(names)}"
            )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass
class DetectorConfig(_Serializable):
    """Everything needed to rebuild an :class:`~sppnet.models.detector.SPPNetDetector`.

    Attributes:
        num_classes: object classes, background excluded (labels are 1..num_classes).
        class_names: optional display names, ``len == num_classes``.
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


@dataclass
class TrainingConfig(_Serializable):
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

    _STAGES = ("finetune_fc", "end_to_end", "svm", "box_regression")

    def __post_init__(self) -> None:
        self.stages = tuple(self.stages)
        self.train_scales = tuple(int(s) for s in self.train_scales)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field that is out of range."""
        unknown = [s for s in self.stages if s not in self._STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known stages are {list(self._STAGES)}")
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
        if not 0.0 < self.lr_decay_at <= 1.0:
            raise ValueError(f"lr_decay_at must be in (0, 1], got {self.lr_decay_at}")


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


@dataclass
class ExperimentConfig:
    """A config file's three sections: ``model``, ``train`` and free-form ``data``."""

    model: DetectorConfig
    train: TrainingConfig = field(default_factory=TrainingConfig)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "train": self.train.to_dict(), "data": self.data}


def load_config_file(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read a YAML or JSON config file with ``model`` / ``train`` / ``data`` sections.

    ``model`` may name a preset (``preset: demo``) plus overrides. Raises ValueError naming the
    file for unreadable content or unknown keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read config file: {err}") from err
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid {path.suffix[1:] or 'YAML'}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with sections model/train/data")
    unknown = sorted(set(raw) - {"model", "train", "data"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; expected model, train, data")
    try:
        model_raw = dict(raw.get("model") or {})
        name = model_raw.pop("preset", None)
        if name is not None:
            DetectorConfig.check_keys(model_raw)
            model = preset(name, **model_raw)
        else:
            model = DetectorConfig.from_dict(model_raw)
        train = TrainingConfig.from_dict(raw.get("train") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: section 'data' must be a mapping")
    return ExperimentConfig(model=model, train=train, data=data)
