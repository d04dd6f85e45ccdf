"""The whole SPP-net detector as one ONNX graph: trunk, RoI-SPP (paper mapping), fc6/fc7, scoring
head and box regressor, with a small numpy post-processing step for NMS.

Graph (opset 18; every size symbolic)::

    image          float32 [1, 3, H, W]   resized to ONE scale and normalised (see prepare_image)
    proposals      float32 [K, 4]         xyxy in ORIGINAL image pixels, K >= 1
    scale_factors  float32 [2]            (fx, fy): resized pixels per original pixel
      -> scores    float32 [K, num_classes]      per-window class scores (softmax / SVM / fused)
      -> boxes     float32 [K, num_classes, 4]   per-class boxes decoded by the box regressor
                                                 (the proposals when the model has none),
                                                 original pixels, not clipped

The resize stays outside the graph: the detector resizes with antialiased bilinear interpolation,
which ONNX's ``Resize`` does not reproduce exactly; :func:`prepare_image` is the detector's own
transform. The per-class NMS (and box voting, when the model uses it) runs afterwards in numpy
(:mod:`sppnet.models.onnx_postprocess`), with the settings stored in the file's metadata.

RoI-SPP uses :class:`~sppnet.models.onnx_roi_spp.GatherRoISPP` (no adaptive pooling: integer bin
edges computed in-graph, a sparse table and gathers), valid for map sides below
``2**table_levels`` cells; :func:`export_detector_onnx` picks ``table_levels`` from the model's
``max_size`` and :class:`OnnxDetector` refuses larger inputs.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sppnet.models.detector import MultiScaleFeatures, SPPNetDetector
from sppnet.models.onnx_postprocess import postprocess_detections
from sppnet.models.onnx_roi_spp import GatherRoISPP
from sppnet.models.transform import DetectionTransform

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "DetectorGraph",
    "OnnxDetector",
    "compare_with_pytorch",
    "export_detector_onnx",
    "prepare_image",
    "pytorch_windows",
]

INPUT_NAMES = ("image", "proposals", "scale_factors")
OUTPUT_NAMES = ("scores", "boxes")
#: Key of the JSON metadata (pre- and post-processing settings) in the ONNX file.
METADATA_KEY = "sppnet_detector"


def _table_levels(max_size: int, stride: int) -> int:
    """Sparse-table levels for maps of an image whose longer side is ``max_size`` (+2 cells of
    margin for the trunk's padding and rounding)."""
    cells = max_size // stride + 2
    return max(1, math.ceil(math.log2(cells + 1)))


class DetectorGraph(nn.Module):
    """The exportable form of an :class:`SPPNetDetector` (eval mode, a copy): see the module
    docstring for the inputs and outputs. Its outputs equal the detector's ``score_windows`` and
    box decoding for windows pooled at one scale."""

    def __init__(self, detector: SPPNetDetector, table_levels: int | None = None) -> None:
        super().__init__()
        if not isinstance(detector, SPPNetDetector):
            raise TypeError(f"expected an SPPNetDetector, got {type(detector).__name__}")
        det = copy.deepcopy(detector).cpu().eval()
        stride = det.backbone.stride
        self.table_levels = table_levels or _table_levels(det.config.max_size, stride)
        self.backbone = det.backbone
        self.pooler = GatherRoISPP(
            det.config.levels, det.pooler.spatial_scale, det.config.pool_mode, self.table_levels
        )
        self.box_head = det.box_head
        self.box_predictor = det.box_predictor
        self.box_regressor = det.box_regressor
        self.box_coder = det.box_coder
        self.regress_from_pool5 = det.config.box_regression_input == "pool5"
        self.num_classes = det.config.num_classes
        #: The longest feature-map side the graph pools correctly.
        self.max_map_side = 2**self.table_levels - 1

    def forward(self, image: Tensor, proposals: Tensor, scale_factors: Tensor):
        features = self.backbone(image)
        scaled = proposals * torch.cat([scale_factors, scale_factors]).unsqueeze(0)
        pooled = self.pooler(features, scaled)
        x = self.box_head(pooled)
        scores = self.box_predictor.class_scores(x)
        if self.box_regressor is None:
            boxes = proposals.unsqueeze(1).expand(-1, self.num_classes, 4)
        else:
            deltas = self.box_regressor(pooled if self.regress_from_pool5 else x)
            flat = deltas.reshape(deltas.shape[0], 4 * self.num_classes)
            boxes = self.box_coder.decode(flat, proposals).reshape(-1, self.num_classes, 4)
        return scores, boxes


def _metadata(detector: SPPNetDetector, graph: DetectorGraph) -> dict[str, Any]:
    cfg, post = detector.config, detector.postprocess
    return {
        "class_names": list(cfg.class_names) if cfg.class_names else None,
        "num_classes": cfg.num_classes,
        "scales": list(cfg.scales),
        "max_size": cfg.max_size,
        "mean": [float(v) for v in detector.transform.mean.flatten()],
        "std": [float(v) for v in detector.transform.std.flatten()],
        "stride": int(detector.backbone.stride),
        "max_map_side": graph.max_map_side,
        "scoring": cfg.scoring,
        "score_threshold": post.score_threshold,
        "nms_threshold": post.nms_threshold,
        "detections_per_image": post.detections_per_image,
        "min_box_size": post.min_box_size,
        "box_voting_iou": post.box_voting_iou,
    }


def export_detector_onnx(
    detector: SPPNetDetector,
    path: str | os.PathLike[str],
    *,
    example_size: tuple[int, int] = (224, 288),
    example_boxes: int = 8,
    table_levels: int | None = None,
    opset_version: int = 18,
) -> Path:
    """Export ``detector`` as one ONNX graph (see the module docstring), written atomically.

    Args:
        detector: an :class:`SPPNetDetector` (copied; the original is not changed).
        path: the ``.onnx`` file.
        example_size: ``(H, W)`` of the tracing input (any size the trunk takes).
        example_boxes: number of proposals in the tracing input (any number >= 1).
        table_levels: sparse-table levels (maps up to ``2**L - 1`` cells a side); default from
            ``detector.config.max_size``.
        opset_version: ONNX opset.

    Returns:
        ``Path(path)``. The file's metadata (key ``sppnet_detector``) holds the JSON settings
        :class:`OnnxDetector` needs: scales, max_size, mean/std, max_map_side, class names, and
        the post-processing thresholds.
    """
    import onnx

    from sppnet.utils.atomic import atomic_write_bytes

    graph = DetectorGraph(detector, table_levels).eval()
    height, width = example_size
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, height, width, generator=g)
    xy = torch.rand(example_boxes, 2, generator=g) * torch.tensor([width / 2, height / 2])
    proposals = torch.cat([xy, xy + 16 + xy], dim=1)
    factors = torch.ones(2)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation and warns about traced shape
        # arithmetic; every shape the graph uses is read from its inputs at run time.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (image, proposals, factors),
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "image": {2: "height", 3: "width"},
                "proposals": {0: "num_boxes"},
                "scores": {0: "num_boxes"},
                "boxes": {0: "num_boxes"},
            },
            opset_version=opset_version,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(_metadata(detector, graph))
    path = Path(path)
    atomic_write_bytes(path, model.SerializeToString())
    return path


def prepare_image(
    image: Tensor, scale: int, max_size: int, mean: list[float], std: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The detector's transform at one scale: ``(image [1, 3, h, w] float32, factors [2])``.

    Args:
        image: Tensor[3, H, W] uint8 (or float in [0, 1]) RGB.
        scale: shorter side in pixels; max_size: cap on the longer side.
        mean, std: the trunk's normalisation.
    """
    batch = DetectionTransform(mean, std, (scale,), max_size)([image])[0]
    return batch.images[0][None].numpy(), batch.factors[0].numpy()


class OnnxDetector:
    """Run an exported detector with onnxruntime: image + proposals in, detections out.

    Args:
        path: a file written by :func:`export_detector_onnx`.
        threads: onnxruntime's intra-op threads (default: onnxruntime's choice).

    ``detector(image, proposals)`` with image Tensor[3, H, W] uint8 and proposals Tensor[K, 4]
    (or arrays) returns ``{"boxes": float32 [D, 4], "labels": int64 [D], "scores": float32
    [D]}`` numpy arrays, by decreasing score, as :class:`SPPNetDetector` does at its first scale.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(f"{path}: not an sppnet detector export (no {METADATA_KEY} metadata)")
        self.settings: dict[str, Any] = json.loads(meta[METADATA_KEY])

    def run_windows(
        self, image: np.ndarray, proposals: np.ndarray, factors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The graph itself: ``(scores [K, C], boxes [K, C, 4])`` for a prepared image."""
        limit = self.settings["max_map_side"] * self.settings["stride"]
        if max(image.shape[-2:]) >= limit:
            raise ValueError(
                f"image of {image.shape[-2]}x{image.shape[-1]} px after resizing: the exported "
                f"graph pools maps below {self.settings['max_map_side']} cells a side "
                f"({limit} px); export with a larger table_levels"
            )
        scores, boxes = self.session.run(
            list(OUTPUT_NAMES),
            {
                "image": np.ascontiguousarray(image, dtype=np.float32),
                "proposals": np.ascontiguousarray(proposals, dtype=np.float32),
                "scale_factors": np.ascontiguousarray(factors, dtype=np.float32),
            },
        )
        return scores, boxes

    def __call__(self, image: Tensor, proposals: Tensor | np.ndarray) -> dict[str, np.ndarray]:
        s = self.settings
        prepared, factors = prepare_image(image, s["scales"][0], s["max_size"], s["mean"], s["std"])
        boxes_in = np.asarray(proposals, dtype=np.float32).reshape(-1, 4)
        height, width = int(image.shape[-2]), int(image.shape[-1])
        if boxes_in.shape[0] == 0:
            # The graph needs K >= 1 (a zero-length gather axis is not portable).
            scores = np.zeros((0, s["num_classes"]), dtype=np.float32)
            boxes = np.zeros((0, s["num_classes"], 4), dtype=np.float32)
        else:
            scores, boxes = self.run_windows(prepared, boxes_in, factors)
        return postprocess_detections(scores, boxes, (height, width), **_post(s))


def _post(settings: dict[str, Any]) -> dict[str, Any]:
    keys = ("score_threshold", "nms_threshold", "detections_per_image", "min_box_size")
    return {**{k: settings[k] for k in keys}, "box_voting_iou": settings["box_voting_iou"]}


@torch.no_grad()
def pytorch_windows(
    detector: SPPNetDetector, image: Tensor, proposals: Tensor, factors: Tensor
) -> tuple[Tensor, Tensor]:
    """The graph's outputs computed by the detector's own stages (``roi_spp`` with its usual
    kernel, ``score_windows``, the box coder): ``(scores [K, C], boxes [K, C, 4])``.

    Args:
        image: Tensor[1, 3, h, w] prepared (:func:`prepare_image`); proposals: Tensor[K, 4]
            original pixels; factors: Tensor[2] (fx, fy).
    """
    detector = detector.eval()
    features = MultiScaleFeatures([detector.backbone(image)], [factors.view(1, 2)], [(0, 0)])
    pooled = detector.pool_windows(features, [proposals])
    scores, deltas = detector.score_windows(pooled)
    k, c = scores.shape
    if deltas is None:
        return scores, proposals[:, None, :].expand(k, c, 4)
    return scores, detector.box_coder.decode(deltas.reshape(k, -1), proposals).view(k, c, 4)


def compare_with_pytorch(
    detector: SPPNetDetector,
    path: str | os.PathLike[str],
    *,
    image: Tensor | None = None,
    image_size: tuple[int, int] = (375, 500),
    scale: int | None = None,
    num_boxes: int = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Run the exported graph and the detector on one image and ``num_boxes`` random proposals.

    Args:
        detector: the detector that was exported.
        path: the ``.onnx`` file.
        image: Tensor[3, H, W] uint8; default a random one of ``image_size`` (H, W).
        scale: the shorter side the image is resized to (default: the model's first scale);
            a small one gives a map smaller than the coarsest pyramid level.
        num_boxes: K, proposals drawn uniformly inside the image (seeded).

    Returns:
        ``{"scores": max |difference|, "boxes": max |difference| in pixels, "map_height",
        "map_width": the feature map's size, "num_boxes"}``.
    """
    g = torch.Generator().manual_seed(seed)
    if image is None:
        image = torch.randint(0, 256, (3, *image_size), generator=g, dtype=torch.uint8)
    height, width = int(image.shape[-2]), int(image.shape[-1])
    xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([width * 0.9, height * 0.9])
    wh = 4 + torch.rand(num_boxes, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
    proposals = torch.cat([xy, xy + wh], dim=1)
    onnx_detector = OnnxDetector(path)
    s = onnx_detector.settings
    prepared, factors = prepare_image(
        image, scale or s["scales"][0], s["max_size"], s["mean"], s["std"]
    )
    scores, boxes = onnx_detector.run_windows(prepared, proposals.numpy(), factors)
    ref_scores, ref_boxes = pytorch_windows(
        detector, torch.from_numpy(prepared), proposals, torch.from_numpy(factors)
    )
    with torch.no_grad():
        fmap = detector.backbone(torch.from_numpy(prepared))
    return {
        "scores": float(np.abs(scores - ref_scores.numpy()).max()),
        "boxes": float(np.abs(boxes - ref_boxes.numpy()).max()),
        "map_height": int(fmap.shape[-2]),
        "map_width": int(fmap.shape[-1]),
        "num_boxes": num_boxes,
    }
