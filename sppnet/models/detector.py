"""The SPP-net object detector (He et al. 2014, section 4): conv once per image, SPP per window.

Data flow (``K`` windows in total over the batch, ``D = C * sum(n*n for n in levels)``)::

    images  --transform-->  one resized, normalised image list per scale
            --backbone--->  feature maps, stride S                      compute_features
    proposals (original pixels) -> scale per window -> boxes * factor
            --pooler----->  Tensor[K, D]  (roi_spp, mapping="paper")     pool_windows
            --box_head--->  fc6, fc7                                     score_windows
            --box_predictor / box_regressor--> scores [K, num_classes], deltas [K, num_classes, 4]
            --postprocess-> per-class NMS, score threshold, cap -> boxes, labels, scores

The parts are attributes with fixed names (``backbone``, ``transform``, ``pooler``, ``box_head``,
``box_predictor``, ``box_regressor``, ``postprocess``) so other code (the R-CNN mode, the
benchmarks) can run any stage on its own. Proposals are an input: the detector does not compute
them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sppnet.config import DetectorConfig
from sppnet.io import CheckpointError, load_model, save_model
from sppnet.models.features import MultiScaleFeatures, pad_stack
from sppnet.models.heads import BoxRegressor, FCHead, SoftmaxHead
from sppnet.models.postprocess import DetectionPostprocess, score_threshold
from sppnet.models.sampling import WindowSampling, label_windows, sample_windows
from sppnet.models.scales import assign_scales
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.models.scoring import head_scoring
from sppnet.models.svm import LinearSVMs
from sppnet.models.transform import DetectionTransform
from sppnet.ops import RoISpatialPyramidPooling
from sppnet.ops.boxes import BoxCoder

__all__ = [
    # The parts live in their own modules; re-exported for code written against this one.
    "DetectionPostprocess",
    "MultiScaleFeatures",
    "SPPNetDetector",
    "WindowSampling",
    "label_windows",
    "sample_windows",
]

CONFIG_KIND = "SPPNetDetector"
#: Smooth-L1 transition point of the box loss (torchvision's Fast/Faster R-CNN: 1/9 with box
#: coder weights (10, 10, 5, 5)).
BOX_LOSS_BETA = 1.0 / 9.0


class SPPNetDetector(nn.Module):
    """SPP-net detector: see the module docstring for the stages.

    Args:
        config: the :class:`DetectorConfig`.
        backbone: a ready :class:`~sppnet.models.backbones.base.Backbone`; by default built from
            ``config.backbone`` / ``backbone_kwargs`` / ``backbone_weights``.

    ``forward(images, proposals, targets=None)``:
        images: list of Tensor[3, H_i, W_i], uint8 in [0, 255] or float in [0, 1], RGB.
        proposals: list of Tensor[M_i, 4] xyxy original pixels (float).
        targets: training only: list of dicts with ``boxes`` Tensor[G_i, 4], ``labels`` [G_i].

    In eval mode returns a list of dicts ``boxes`` Tensor[D, 4] float32 (original pixels),
    ``labels`` Tensor[D] int64 (1..num_classes), ``scores`` Tensor[D] float32. In training mode
    returns ``{"loss_classifier": Tensor[], "loss_box_reg": Tensor[]}`` (the second only with a box
    regressor; see :meth:`training_losses`): softmax cross-entropy of fc8 on windows sampled as in
    the paper (``window_sampling``: 25% foreground), the conv maps computed at one of
    ``config.scales`` drawn at random. The trunk's batch norms stay frozen in training mode.
    """

    def __init__(
        self,
        config: DetectorConfig,
        backbone: nn.Module | None = None,
        window_sampling: WindowSampling | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        if backbone is None:
            from sppnet.models.backbones.registry import create_backbone

            backbone = create_backbone(
                config.backbone, weights=config.backbone_weights, **config.backbone_kwargs
            )
        self.backbone = backbone
        self.transform = DetectionTransform(
            backbone.mean, backbone.std, config.scales, config.max_size
        )
        # The detector makes the batch indices itself and checks the proposals once per forward
        # call, so the pooler skips its value checks (each a device sync on a GPU).
        self.pooler = RoISpatialPyramidPooling(
            config.levels,
            1.0 / backbone.stride,
            config.pool_mode,
            mapping="paper",
            check_boxes=False,
        )
        pooled = self.pooler.output_size(backbone.out_channels)
        if config.fc_dims:
            self.box_head: nn.Module = FCHead(pooled, config.fc_dims, config.dropout)
            rep = config.fc_dims[-1]
        else:
            self.box_head = nn.Identity()
            rep = pooled
        self.pooled_features = pooled
        self.representation_size = rep
        self.box_predictor: nn.Module
        if config.scoring == "softmax":
            self.box_predictor = SoftmaxHead(rep, config.num_classes)
        elif config.scoring == "svm":
            self.box_predictor = LinearSVMs(rep, config.num_classes)
        else:
            self.box_predictor = SoftmaxSVMFusion(
                SoftmaxHead(rep, config.num_classes), LinearSVMs(rep, config.num_classes)
            )
        self.box_regressor: BoxRegressor | None = None
        if config.box_regression:
            reg_in = pooled if config.box_regression_input == "pool5" else rep
            self.box_regressor = BoxRegressor(reg_in, config.num_classes)
        self.box_coder = BoxCoder(config.box_coder_weights)
        self.postprocess = DetectionPostprocess.from_config(config)
        self.window_sampling = window_sampling if window_sampling is not None else WindowSampling()
        #: True for the copies made by :func:`sppnet.models.fuse.fuse_for_inference`.
        self.inference_only = False
        self._freeze_batch_norm()

    # ------------------------------------------------------------------ set-up helpers
    def _freeze_batch_norm(self) -> None:
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for p in m.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> SPPNetDetector:
        """As ``nn.Module.train``, but the trunk's batch norms always stay in eval mode: a batch
        of one or two images cannot estimate their statistics."""
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def set_box_predictor(self, head: nn.Module) -> None:
        """Swap the scoring head (:class:`SoftmaxHead`, :class:`LinearSVMs` or
        :class:`SoftmaxSVMFusion`); updates the config and the post-processing score threshold to
        match."""
        scoring = head_scoring(head)
        if head.num_classes != self.config.num_classes:
            raise ValueError(
                f"head has {head.num_classes} classes, the detector {self.config.num_classes}"
            )
        self.box_predictor = head
        self.config = self.config.replace(scoring=scoring)
        self.postprocess.score_threshold = score_threshold(self.config, scoring)

    def set_scales(self, scales: Sequence[int]) -> None:
        """Use other scales (shorter sides in pixels) from now on, e.g. five at test time for a
        model trained at one; updates the config and the transform together."""
        self.config = self.config.replace(scales=tuple(int(s) for s in scales))
        self.transform.scales = self.config.scales

    # ------------------------------------------------------------------ stages
    def compute_features(
        self, images: Sequence[Tensor], scales: Sequence[int] | None = None
    ) -> MultiScaleFeatures:
        """Run the trunk once per image and scale.

        Args:
            images: list of Tensor[3, H_i, W_i] (uint8 or float in [0, 1]).
            scales: shorter sides to use instead of ``config.scales`` (e.g. one random scale per
                step in end-to-end training).

        Returns:
            :class:`MultiScaleFeatures` with one padded map stack and factor table per scale.
        """
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        maps, factors = [], []
        for batch in self.transform(images, scales):
            shapes = {t.shape for t in batch.images}
            if len(shapes) == 1:
                maps.append(self.backbone(torch.stack(batch.images)))
            else:
                maps.append(pad_stack([self.backbone(t[None])[0] for t in batch.images]))
            factors.append(batch.factors)
        return MultiScaleFeatures(maps, factors, sizes)

    def window_scales(self, features: MultiScaleFeatures, proposals: Sequence[Tensor]) -> Tensor:
        """The scale index of every window (all images concatenated), Tensor[K] int64."""
        out = []
        for i, boxes in enumerate(proposals):
            f = [math.sqrt(float(fs[i, 0]) * float(fs[i, 1])) for fs in features.factors]
            out.append(assign_scales(boxes, f, self.config.target_side))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)

    def pool_windows(self, features: MultiScaleFeatures, proposals: Sequence[Tensor]) -> Tensor:
        """SPP-pool every window at its scale.

        Args:
            features: from :meth:`compute_features` (or a cache of it).
            proposals: list of Tensor[M_i, 4] xyxy original pixels, one per image.

        Returns:
            Tensor[K, D], K = sum M_i, rows in the order of the concatenated proposals, in the
            dtype of the feature maps.
        """
        if len(proposals) != len(features.image_sizes):
            raise ValueError(
                f"got {len(proposals)} proposal tensors for {len(features.image_sizes)} images"
            )
        for i, p in enumerate(proposals):
            if p.ndim != 2 or p.shape[-1] != 4:
                raise ValueError(f"proposals[{i}] must be Tensor[M, 4], got {tuple(p.shape)}")
        device = features.maps[0].device
        boxes = torch.cat([p.to(device=device, dtype=torch.float32) for p in proposals])
        batch_index = torch.cat(
            [
                torch.full((p.shape[0],), i, dtype=torch.float32, device=device)
                for i, p in enumerate(proposals)
            ]
        )
        n_scales = len(features.maps)
        scale_index = self.window_scales(features, proposals).to(device) if n_scales > 1 else None
        out: Tensor | None = None
        for k, (fmap, factors) in enumerate(zip(features.maps, features.factors, strict=True)):
            sel = None if scale_index is None else torch.where(scale_index == k)[0]
            b = boxes if sel is None else boxes[sel]
            bi = batch_index if sel is None else batch_index[sel]
            f = factors.to(device)[bi.long()]
            scaled = b * torch.cat([f, f], dim=1)
            pooled = self.pooler(fmap, torch.cat([bi[:, None], scaled], dim=1))
            if sel is None:
                return pooled
            if out is None:
                out = pooled.new_empty((boxes.shape[0], pooled.shape[1]))
            out[sel] = pooled
        assert out is not None
        return out

    def score_windows(self, pooled: Tensor) -> tuple[Tensor, Tensor | None]:
        """fc6/fc7, the scoring head and the box regressor.

        Args:
            pooled: Tensor[K, D] from :meth:`pool_windows`.

        Returns:
            ``(scores, deltas)``: Tensor[K, num_classes] (softmax probabilities or SVM margins of
            classes 1..num_classes) and Tensor[K, num_classes, 4] R-CNN deltas (``None`` without a
            box regressor).
        """
        pooled = pooled.float()
        x = self.box_head(pooled)
        # float32 out whatever autocast ran the layers in: boxes are decoded from these.
        scores = self.box_predictor.class_scores(x).float()
        deltas = None
        if self.box_regressor is not None:
            deltas = self.box_regressor(self.box_regression_features(pooled, x)).float()
        return scores, deltas

    def box_regression_features(self, pooled: Tensor, fc7: Tensor | None = None) -> Tensor:
        """What the box regressor reads (``config.box_regression_input``): the pooled conv
        features ``pooled`` Tensor[K, D] (``"pool5"``, the paper) or fc7 Tensor[K, R] (``fc7``
        when given, else computed from ``pooled``)."""
        if self.config.box_regression_input == "pool5":
            return pooled
        return fc7 if fc7 is not None else self.box_head(pooled)

    def detect_from_features(
        self, features: MultiScaleFeatures, proposals: Sequence[Tensor]
    ) -> list[dict[str, Tensor]]:
        """Eval-mode detection given precomputed features (see :meth:`forward`)."""
        pooled = self.pool_windows(features, proposals)
        scores, deltas = self.score_windows(pooled)
        return self.windows_to_detections(proposals, scores, deltas, features.image_sizes)

    def windows_to_detections(
        self,
        proposals: Sequence[Tensor],
        scores: Tensor,
        deltas: Tensor | None,
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Per-window scores and box deltas -> per-image detections (box decoding, then
        :attr:`postprocess`: per-class NMS, score threshold, cap).

        Args:
            proposals: list of Tensor[M_i, 4] xyxy original pixels.
            scores: Tensor[K, num_classes], K = sum M_i, windows in the order of ``proposals``.
            deltas: Tensor[K, num_classes, 4] or None (boxes stay the proposals).
            image_sizes: (height, width) of each original image.

        Returns:
            One dict per image: ``boxes`` Tensor[D, 4] float32, ``labels`` Tensor[D] int64
            (1..num_classes), ``scores`` Tensor[D] float32.
        """
        results = []
        start = 0
        for props, size in zip(proposals, image_sizes, strict=True):
            m = props.shape[0]
            p = props.to(device=scores.device, dtype=torch.float32)
            s = scores[start : start + m]
            if deltas is None:
                boxes = p[:, None, :].expand(m, s.shape[1], 4)
            else:
                d = deltas[start : start + m].reshape(m, -1)
                boxes = self.box_coder.decode(d, p).view(m, -1, 4)
            results.append(self.postprocess(boxes, s, size))
            start += m
        return results

    def forward(
        self,
        images: Sequence[Tensor] | None,
        proposals: Sequence[Tensor],
        targets: Sequence[dict[str, Tensor]] | None = None,
        *,
        features: MultiScaleFeatures | None = None,
        sampling: WindowSampling | None = None,
    ) -> list[dict[str, Tensor]] | dict[str, Tensor]:
        """See the class docstring. ``features`` (keyword only) replaces ``images`` with conv
        features computed earlier (e.g. a training cache); ``images`` is then ignored.
        ``sampling`` (training only) replaces :attr:`window_sampling` for this call."""
        if features is None:
            if images is None:
                raise ValueError("give images or features")
            if len(images) != len(proposals):
                raise ValueError(f"got {len(images)} images but {len(proposals)} proposal tensors")
        for i, p in enumerate(proposals):
            if p.numel() and not bool(torch.isfinite(p).all()):
                raise ValueError(f"proposals[{i}] holds NaN or Inf coordinates")
        if self.training:
            n = len(proposals)
            if targets is None or len(targets) != n:
                raise ValueError("training mode needs one target dict per image")
            if features is None:
                assert images is not None
                # One scale per step, drawn at random (Fast R-CNN's multi-scale training).
                scales = self.config.scales
                scale = scales[int(torch.randint(len(scales), (1,)))] if len(scales) > 1 else None
                features = self.compute_features(images, None if scale is None else [scale])
            return self.training_losses(features, proposals, targets, sampling)
        if features is None:
            assert images is not None
            features = self.compute_features(images)
        return self.detect_from_features(features, proposals)

    def training_losses(
        self,
        features: MultiScaleFeatures,
        proposals: Sequence[Tensor],
        targets: Sequence[dict[str, Tensor]],
        sampling: WindowSampling | None = None,
    ) -> dict[str, Tensor]:
        """The losses on windows sampled per image by ``sampling`` (default
        :attr:`window_sampling`; ground-truth
        boxes join the proposals, as in R-CNN). Works on live features (end to end) or cached ones
        (fc only). Draws from the global torch RNG.

        Returns:
            ``loss_classifier``: fc8's cross-entropy, averaged over the sampled windows; and, when
            the detector has a box regressor, ``loss_box_reg``: Fast R-CNN's smooth-L1 loss
            (``beta`` :data:`BOX_LOSS_BETA`) of the regressor's deltas for each foreground
            window's own class against the box coder's targets, summed over the foreground
            windows and divided by the number sampled. Which losses are minimised, and with what
            weights, is the training loop's choice (:mod:`sppnet.engine.detection`).

        Raises:
            TypeError: the scoring head is not a :class:`SoftmaxHead` (SVMs are trained by
                :mod:`sppnet.engine.detection`, not by back-propagation).
        """
        if not isinstance(self.box_predictor, SoftmaxHead):
            raise TypeError("training_losses needs the softmax head (box_predictor = SoftmaxHead)")
        ws = self.window_sampling if sampling is None else sampling
        box_loss = self.box_regressor is not None
        sampled, labels, box_targets = [], [], []
        for props, target in zip(proposals, targets, strict=True):
            gt = target["boxes"].to(props.device, torch.float32)
            windows = torch.cat([gt, props.to(torch.float32)])
            max_iou, gt_index, matched = label_windows(
                windows, gt, target["labels"].to(props.device)
            )
            fg, bg = sample_windows(
                max_iou, ws.windows_per_image, ws.fg_fraction, ws.fg_iou, ws.bg_iou
            )
            sampled.append(torch.cat([windows[fg], windows[bg]]))
            labels.append(torch.cat([matched[fg], torch.zeros_like(matched[bg])]))
            if box_loss:
                # Rows of the background windows are never read (their label is 0).
                fg_targets = self.box_coder.encode(gt[gt_index[fg]], windows[fg])
                box_targets.append(torch.cat([fg_targets, fg_targets.new_zeros(bg.numel(), 4)]))
        pooled = self.pool_windows(features, sampled).float()
        x = self.box_head(pooled)
        logits = self.box_predictor(x)
        target_labels = torch.cat(labels).to(logits.device)
        if target_labels.numel() == 0:
            zero = logits.sum() * 0.0
            return {"loss_classifier": zero, **({"loss_box_reg": zero} if box_loss else {})}
        losses = {"loss_classifier": F.cross_entropy(logits, target_labels)}
        if box_loss:
            assert self.box_regressor is not None
            fg_rows = torch.where(target_labels > 0)[0]
            reg_in = self.box_regression_features(pooled, x)
            deltas = self.box_regressor(reg_in[fg_rows])
            pred = deltas[torch.arange(fg_rows.numel()), target_labels[fg_rows] - 1]
            target_deltas = torch.cat(box_targets).to(pred.device)[fg_rows]
            # Fast R-CNN's normalisation: summed over the foreground, divided by all sampled.
            losses["loss_box_reg"] = (
                F.smooth_l1_loss(pred, target_deltas, beta=BOX_LOSS_BETA, reduction="sum")
                / target_labels.numel()
            )
        return losses

    # ------------------------------------------------------------------ persistence
    def checkpoint_config(self) -> dict[str, Any]:
        """The JSON object saved as ``config.json``: rebuilds this model with
        :meth:`from_pretrained`."""
        return {"kind": CONFIG_KIND, "detector": self.config.to_dict()}

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (+ manifest) to the directory ``path``
        (atomically, via :func:`sppnet.io.save_model`)."""
        if self.inference_only:
            raise ValueError(
                "this detector is an inference copy (fuse_for_inference: batch norms folded "
                "away); save the detector it was made from"
            )
        return save_model(path, self.state_dict(), self.checkpoint_config())

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], map_location: Any = "cpu"
    ) -> SPPNetDetector:
        """Rebuild a detector saved by :meth:`save_pretrained` (or a training checkpoint), in
        eval mode.

        Raises:
            sppnet.io.CheckpointError: missing, truncated or corrupt files, or a
                config that is not an SPPNetDetector's.
        """
        state, raw = load_model(path, map_location=map_location)
        if raw.get("kind") != CONFIG_KIND or "detector" not in raw:
            raise CheckpointError(f"{path}: config.json does not describe an {CONFIG_KIND}")
        try:
            config = DetectorConfig.from_dict(raw["detector"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: invalid detector config: {err}") from err
        model = cls(config.replace(backbone_weights=None))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: weights do not match the config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        model.config = config
        model.eval()
        return model.to(map_location) if map_location is not None else model
