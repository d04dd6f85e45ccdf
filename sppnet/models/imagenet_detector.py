"""ImageNet-labelled region detections with no training: SPP-net with a pretrained classifier.

MobileNetV2 classifies an image by global average pooling its last feature map (1280 channels) and
applying one linear layer. Global average pooling *is* SPP with the single level ``(1,)`` in mode
``"avg"``, so the same classifier can score any window of the feature map once it is SPP-pooled:
an :class:`~sppnet.models.detector.SPPNetDetector` with levels ``(1,)``, ``"avg"``, no fc layers
and the network's own ImageNet classifier as its scoring head labels selective-search windows with
the 1,000 ImageNet classes, computing the conv features once per image and scale.

How close is a window's score to the network's own? A window's cells under the paper's mapping
(``roi_spp(..., mapping="paper")``, stride ``S = 32``) are ``floor(x1/S) + 1 .. ceil(x2/S) - 1``,
clipped to the map. For the window that is the whole image, ``x1 = 0`` gives first cell 1: the
mapping drops the border cells (their receptive-field centres lie on or outside the image edge), so
the window's logits are close to, not equal to, the whole-image logits. They are *equal* exactly
when the mapped window is the whole map, which for the whole-image window happens only when the
map is a single cell (both clipped to cell 0): an image of at most ``S`` pixels per side after
resizing (MobileNetV2 needs at least 32, so exactly 32 x 32). For a larger map a window needs
``x1 < 0`` (so that ``floor(x1/S) + 1 <= 0``) and ``x2 > S * (W' - 1)`` on each axis, i.e. a box
reaching past the image.

Each window is pooled at the scale at which its area is closest to 224 x 224 pixels (the paper's
multi-scale rule), which is also the size this network was trained to classify.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import torch
from torch import Tensor, nn
from torchvision.ops import nms

from sppnet.config import DetectorConfig
from sppnet.models.detector import DetectionPostprocess, SPPNetDetector
from sppnet.ops.boxes import clip_boxes_to_image

__all__ = [
    "IMAGENET_SCALES",
    "ImageNetClassifierHead",
    "TopClassPostprocess",
    "imagenet_class_names",
    "imagenet_detector",
    "imagenet_detector_config",
]

#: Shorter sides (pixels) at which the trunk runs: 224 (where a whole photo is the size the
#: network was trained on) and larger ones, so that smaller windows also come close to 224 x 224.
IMAGENET_SCALES: tuple[int, ...] = (224, 320, 448, 640)


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names in the order of the classifier's outputs."""
    text = resources.files("sppnet.models").joinpath("imagenet_classes.txt").read_text("utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != 1000:
        raise ValueError(f"imagenet_classes.txt: expected 1000 class names, found {len(names)}")
    return names


class ImageNetClassifierHead(nn.Module):
    """The scoring head of the detector: an ImageNet classifier over pooled window features.

    Unlike :class:`~sppnet.models.heads.SoftmaxHead` there is no background class: every window
    gets a distribution over the 1,000 classes and the post-processing's score threshold plays the
    part of "background".

    Args:
        classifier: ``Tensor[K, C] -> Tensor[K, 1000]`` logits (MobileNetV2's
            ``Dropout + Linear(1280, 1000)``, from :meth:`Backbone.imagenet_head`).
        num_classes: the classifier's number of outputs.

    ``forward`` returns logits Tensor[K, num_classes]; :meth:`class_scores` the softmax
    probabilities Tensor[K, num_classes] (column ``j`` is label ``j + 1``).
    """

    def __init__(self, classifier: nn.Module, num_classes: int = 1000) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_classes = int(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)

    def class_scores(self, x: Tensor) -> Tensor:
        return self.classifier(x).softmax(dim=1)


class TopClassPostprocess(DetectionPostprocess):
    """Post-processing for mutually exclusive, fine-grained classes: each window keeps only its
    best class, then NMS runs across classes.

    ImageNet's classes split one object into near-synonyms (``tabby``, ``tiger cat``,
    ``Egyptian cat``); per-class NMS would keep one box per synonym on the same cat. Here a window
    is one detection (its arg-max class and that class's probability) and a box suppresses any
    lower-scored box overlapping it by more than ``nms_threshold``, whatever their labels.

    Same arguments and ``forward`` contract as :class:`DetectionPostprocess`.
    """

    def forward(
        self, boxes: Tensor, scores: Tensor, image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        best, column = scores.max(dim=1)
        rows = torch.arange(boxes.shape[0], device=boxes.device)
        picked = clip_boxes_to_image(boxes[rows, column], image_size)
        size = (picked[:, 2:] - picked[:, :2]).min(dim=1).values
        idx = torch.where((best > self.score_threshold) & (size >= self.min_box_size))[0]
        keep = idx[nms(picked[idx].float(), best[idx].float(), self.nms_threshold)]
        keep = keep[: self.detections_per_image]
        return {
            "boxes": picked[keep].float(),
            "labels": column[keep] + 1,
            "scores": best[keep].float(),
        }


def imagenet_detector_config(
    scales: Sequence[int] = IMAGENET_SCALES,
    score_threshold: float = 0.3,
    nms_threshold: float = 0.3,
    detections_per_image: int = 20,
) -> DetectorConfig:
    """The :class:`DetectorConfig` of the ImageNet window classifier (see the module docstring).

    Args:
        scales: shorter sides in pixels; each window uses the one where it is closest to 224 x 224.
        score_threshold: windows whose best class has probability <= this give no detection.
        nms_threshold: per-class NMS IoU threshold.
        detections_per_image: cap on the detections returned per image.
    """
    return DetectorConfig(
        num_classes=1000,
        class_names=imagenet_class_names(),
        backbone="mobilenet_v2",
        backbone_weights="imagenet",
        levels=(1,),
        pool_mode="avg",
        scales=tuple(scales),
        max_size=max(2000, 2 * max(scales)),
        target_side=224.0,
        fc_dims=(),
        dropout=0.0,
        scoring="softmax",
        box_regression=False,
        nms_threshold=nms_threshold,
        score_threshold=score_threshold,
        detections_per_image=detections_per_image,
    )


def imagenet_detector(
    weights: str | None = "imagenet",
    scales: Sequence[int] = IMAGENET_SCALES,
    score_threshold: float = 0.3,
    nms_threshold: float = 0.3,
    detections_per_image: int = 20,
) -> SPPNetDetector:
    """An :class:`SPPNetDetector` that labels windows with ImageNet classes, untrained.

    Args:
        weights: MobileNetV2 ImageNet weights: ``"imagenet"`` (resolved offline as
            :func:`sppnet.models.create_backbone` does) or a checkpoint file.
        scales, score_threshold, nms_threshold, detections_per_image: see
            :func:`imagenet_detector_config`.

    Returns:
        The detector in eval mode. Its detections' labels are 1..1000: label ``j`` is
        ``config.class_names[j - 1]``.

    Raises:
        sppnet.models.WeightsNotFoundError: no ImageNet weights were found (the message lists
            every place looked).
        ValueError: ``weights`` is None (random weights would label windows at random).
    """
    if weights is None:
        raise ValueError(
            "imagenet_detector: weights must be 'imagenet' or a MobileNetV2 checkpoint; a random "
            "network has no meaningful ImageNet classifier"
        )
    from sppnet.models.backbones.registry import create_backbone

    config = imagenet_detector_config(scales, score_threshold, nms_threshold, detections_per_image)
    config = config.replace(backbone_weights=weights)
    backbone = create_backbone("mobilenet_v2", weights=weights)
    detector = SPPNetDetector(config, backbone=backbone)
    # The config's softmax head (with a background column) is replaced by the network's own head.
    detector.box_predictor = ImageNetClassifierHead(backbone.imagenet_head(), config.num_classes)
    detector.postprocess = TopClassPostprocess(
        score_threshold, nms_threshold, detections_per_image, config.min_box_size
    )
    return detector.eval()
