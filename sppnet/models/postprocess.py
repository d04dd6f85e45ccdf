"""Per-image post-processing of per-window scores and boxes: clip, thresholds, per-class NMS,
optional box voting, cap."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sppnet.config import DetectorConfig
from sppnet.ops.box_voting import box_voting
from sppnet.ops.boxes import batched_nms_per_class, clip_boxes_to_image

__all__ = ["DetectionPostprocess", "score_threshold"]


def score_threshold(config: DetectorConfig, scoring: str) -> float:
    """The score below which a detection is dropped, for a head of kind ``scoring``: SVM margins
    (``"svm"``) use ``config.svm_score_threshold``, probabilities (``"softmax"``,
    ``"softmax+svm"``) ``config.score_threshold``."""
    return config.svm_score_threshold if scoring == "svm" else config.score_threshold


class DetectionPostprocess(nn.Module):
    """Per-image post-processing: clip, drop small boxes and low scores, per-class NMS, optional
    box voting, cap.

    Args:
        score_threshold: detections with score <= this are dropped.
        nms_threshold: per-class NMS IoU threshold (0.3 in the paper).
        detections_per_image: keep at most this many, the highest-scoring.
        min_box_size: boxes narrower or lower than this (pixels) are dropped.
        box_voting_iou: if set, each kept box moves to the score-weighted mean of the candidates
            of its class overlapping it by at least this IoU (:func:`~sppnet.ops.box_voting`).
    """

    def __init__(
        self,
        score_threshold: float,
        nms_threshold: float = 0.3,
        detections_per_image: int = 100,
        min_box_size: float = 1.0,
        box_voting_iou: float | None = None,
    ) -> None:
        super().__init__()
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.detections_per_image = int(detections_per_image)
        self.min_box_size = float(min_box_size)
        self.box_voting_iou = None if box_voting_iou is None else float(box_voting_iou)

    @classmethod
    def from_config(
        cls, config: DetectorConfig, scoring: str | None = None
    ) -> DetectionPostprocess:
        """The post-processing ``config`` describes, with the score threshold of the head
        ``scoring`` (default ``config.scoring``; see :func:`score_threshold`)."""
        return cls(
            score_threshold(config, config.scoring if scoring is None else scoring),
            config.nms_threshold,
            config.detections_per_image,
            config.min_box_size,
            config.box_voting_iou,
        )

    def extra_repr(self) -> str:
        return (
            f"score_threshold={self.score_threshold}, nms_threshold={self.nms_threshold}, "
            f"detections_per_image={self.detections_per_image}, "
            f"box_voting_iou={self.box_voting_iou}"
        )

    def forward(
        self, boxes: Tensor, scores: Tensor, image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """One image's windows to detections.

        Args:
            boxes: Tensor[K, num_classes, 4] per-class boxes, original pixels.
            scores: Tensor[K, num_classes] per-class scores.
            image_size: (height, width) of the original image.

        Returns:
            ``{"boxes": Tensor[D, 4] float32, "labels": Tensor[D] int64 in 1..num_classes,
            "scores": Tensor[D] float32}`` by decreasing score.
        """
        num_classes = scores.shape[1]
        boxes = clip_boxes_to_image(boxes.reshape(-1, 4), image_size)
        labels = torch.arange(1, num_classes + 1, device=scores.device).expand_as(scores)
        flat_scores = scores.reshape(-1)
        flat_labels = labels.reshape(-1)
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        ok = (flat_scores > self.score_threshold) & (w >= self.min_box_size)
        ok &= h >= self.min_box_size
        idx = torch.where(ok)[0]
        boxes, flat_scores, flat_labels = boxes[idx], flat_scores[idx], flat_labels[idx]
        keep = batched_nms_per_class(
            boxes,
            flat_scores,
            flat_labels,
            self.nms_threshold,
            max_detections=self.detections_per_image,
        )
        kept = boxes[keep]
        if self.box_voting_iou is not None:
            kept = box_voting(
                kept, flat_labels[keep], boxes, flat_scores, flat_labels, self.box_voting_iou
            )
        return {
            "boxes": kept.float(),
            "labels": flat_labels[keep],
            "scores": flat_scores[keep].float(),
        }
