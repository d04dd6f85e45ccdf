"""R-CNN mode: the baseline SPP-net is measured against, on the same trunk and the same weights.

R-CNN (Girshick et al. 2014) runs the whole network once per proposal window: the window, grown by
16 pixels of context, is cropped from the image and warped to the network's fixed input size
(:func:`sppnet.ops.warp.crop_and_warp`), then the conv layers, the pooling and the fc layers see it
as a whole image. SPP-net instead runs the conv layers once per image and pools every window from
that one feature map. The paper's speed comparison (its table 10, "ZF-5 in R-CNN mode") is exactly
this pair of modes on one network; :class:`RCNNDetector` is that mode for an
:class:`~sppnet.models.detector.SPPNetDetector`::

    image --normalise--> crop + warp each window to S x S (context 16 px)     warp_windows
          --backbone--> Tensor[k, C, h, w] per chunk of windows             conv_windows
          --spp over the whole map (the detector's levels and mode)--> Tensor[K, D]
          --the detector's fc6/fc7, scoring head, box regressor, NMS--> detections

With a fixed ``S x S`` input the pyramid's output has the same length ``D`` as the detector's
RoI pooling, so the detector's heads apply unchanged. Windows are processed in chunks so that
2,000 windows of 224 x 224 never sit in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from sppnet.ops import spp
from sppnet.ops.warp import iter_crop_and_warp

__all__ = ["RCNNDetector"]


class RCNNDetector(nn.Module):
    """An :class:`~sppnet.models.detector.SPPNetDetector` run the R-CNN way: the whole network
    once per warped window.

    The detector is shared, not copied: both modes use the same trunk, pyramid levels, fc layers
    and heads, so their difference in speed is the difference between the two ways of computing
    conv features.

    Args:
        detector: the SPP-net detector whose parts are used.
        input_size: the warped window's side in pixels (224, the trunks' ImageNet input size).
        context_padding: pixels of context around each window in the warped image (R-CNN: 16).
        chunk_size: windows warped and run through the trunk at once (bounds memory: a chunk of
            64 windows of 3 x 224 x 224 float32 is 38 MB, plus the trunk's activations).

    ``forward(images, proposals)`` (eval only): images a list of Tensor[3, H_i, W_i] (uint8 or
    float in [0, 1], RGB, at their original size; R-CNN does not resize the image, it warps each
    window), proposals a list of Tensor[M_i, 4] xyxy original pixels. Returns the detector's
    per-image dicts ``boxes``, ``labels``, ``scores``.
    """

    def __init__(
        self,
        detector: nn.Module,
        input_size: int = 224,
        context_padding: int = 16,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        if input_size < detector.backbone.min_input_size:
            raise ValueError(
                f"input_size {input_size} is below the trunk's minimum input side "
                f"{detector.backbone.min_input_size}"
            )
        if not 0 <= 2 * context_padding < input_size:
            raise ValueError(
                f"context_padding must be in [0, input_size / 2), got {context_padding} for "
                f"input_size {input_size}"
            )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.detector = detector
        self.input_size = int(input_size)
        self.context_padding = int(context_padding)
        self.chunk_size = int(chunk_size)
        self.train(detector.training)  # mirror the wrapped detector's mode

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, context_padding={self.context_padding}, "
            f"chunk_size={self.chunk_size}"
        )

    def normalize(self, image: Tensor) -> Tensor:
        """Tensor[3, H, W] uint8 or float in [0, 1] -> float normalised with the trunk's mean/std,
        at the original size (R-CNN crops windows from the unresized image)."""
        return self.detector.backbone.normalize(self.detector.transform.to_float(image))

    def warp_windows(self, image: Tensor, boxes: Tensor) -> Iterator[Tensor]:
        """Crop and warp one image's windows, ``chunk_size`` at a time.

        Args:
            image: Tensor[3, H, W] normalised (see :meth:`normalize`).
            boxes: Tensor[M, 4] xyxy original pixels.

        Yields:
            Tensor[k, 3, S, S] with k <= chunk_size, windows in box order. Pixels of the grown
            window outside the image are 0 (the mean, after normalisation), as in R-CNN.
        """
        boxes = boxes.to(device=image.device, dtype=image.dtype)
        yield from iter_crop_and_warp(
            image,
            boxes,
            self.input_size,
            self.context_padding,
            fill=0.0,
            chunk_size=self.chunk_size,
        )

    def conv_windows(self, image: Tensor, boxes: Tensor) -> Iterator[Tensor]:
        """The trunk's feature map of every warped window: Tensor[k, C, h, w] per chunk."""
        for crops in self.warp_windows(image, boxes):
            yield self.detector.backbone(crops)

    def pool(self, features: Tensor) -> Tensor:
        """SPP over each window's whole map with the detector's levels and mode:
        Tensor[k, C, h, w] -> Tensor[k, D], the length the detector's heads take."""
        pooler = self.detector.pooler
        return spp(features, pooler.levels, pooler.mode)

    def window_scores(self, image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor | None]:
        """Scores and box deltas of one image's windows, chunk by chunk.

        Args:
            image: Tensor[3, H, W] normalised (see :meth:`normalize`).
            boxes: Tensor[M, 4] xyxy original pixels.

        Returns:
            ``(scores, deltas)`` as the detector's ``score_windows``: Tensor[M, num_classes] and
            Tensor[M, num_classes, 4] (or None without a box regressor).
        """
        scores, deltas = [], []
        for features in self.conv_windows(image, boxes):
            s, d = self.detector.score_windows(self.pool(features))
            scores.append(s)
            if d is not None:
                deltas.append(d)
        if not scores:  # no windows: let the heads give correctly shaped empty outputs
            width = self.detector.pooler.output_size(self.detector.backbone.out_channels)
            return self.detector.score_windows(image.new_zeros((0, width)))
        return torch.cat(scores), (torch.cat(deltas) if deltas else None)

    @torch.no_grad()
    def forward(
        self, images: Sequence[Tensor], proposals: Sequence[Tensor]
    ) -> list[dict[str, Tensor]]:
        if self.training:
            raise RuntimeError(
                "RCNNDetector is for inference; train the SPP-net detector it wraps instead"
            )
        if len(images) != len(proposals):
            raise ValueError(f"got {len(images)} images but {len(proposals)} proposal tensors")
        sizes, scores, deltas = [], [], []
        for i, (image, boxes) in enumerate(zip(images, proposals, strict=True)):
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"proposals[{i}] must be Tensor[M, 4], got {tuple(boxes.shape)}")
            normalised = self.normalize(image)
            sizes.append((int(image.shape[-2]), int(image.shape[-1])))
            s, d = self.window_scores(normalised, boxes)
            scores.append(s)
            if d is not None:
                deltas.append(d)
        all_deltas = torch.cat(deltas) if deltas else None
        return self.detector.windows_to_detections(proposals, torch.cat(scores), all_deltas, sizes)
