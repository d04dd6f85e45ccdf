"""The latency table of ``sppnet bench detect`` and the mAP of its variants (see
:mod:`sppnet.benchmarks.detect`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from sppnet.benchmarks.detect_settings import (
    BenchSettings,
    Variant,
    demo_network,
    paper_network,
    settings_median,
    with_heads,
)
from sppnet.config import DetectorConfig
from sppnet.models.detector import SPPNetDetector
from sppnet.models.svd import count_linear_macs

__all__ = ["evaluate_variants", "latency_table", "ranks_str"]


# ----------------------------------------------------------------------------- latency table
def _torchvision_latency(name: str, image: Tensor, settings: BenchSettings) -> float:
    import torchvision

    builder = getattr(torchvision.models.detection, name)
    model = builder(weights=None, weights_backbone=None).eval().to(settings.device)
    x = image.float() / 255
    return settings_median(lambda: model([x]), settings)


def latency_table(
    image: Tensor,
    windows: Tensor,
    settings: BenchSettings,
    log: Callable[[str], None],
    detector: SPPNetDetector | None = None,
    speed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seconds per image, proposals excluded: torchvision's models and SPP-net variants.

    The paper network's rows come from the speed table when it was measured in the same run
    (``speed``: conv + pool + fc of SPP 1 scale, without NMS, which takes milliseconds);
    otherwise they are timed here like the other rows (the whole forward).
    """
    rows = []
    for name in settings.torchvision:
        log(f"latency: torchvision {name} ...")
        seconds = _torchvision_latency(name, image, settings)
        rows.append(
            {"name": f"torchvision {name}", "kind": "torchvision", "seconds": seconds,
             "measured": "forward"}
        )  # fmt: skip
    paper = paper_network(settings)
    svd_name = f"paper + SVD {ranks_str(settings.svd_ranks)}"
    if speed is not None:
        for name, key, macs in (
            ("paper", "rows", "fc_macs_per_window"),
            (svd_name, "svd_rows", "fc_macs_per_window_svd"),
        ):
            row = _spp_row(
                name, paper, settings.windows, speed[key]["spp_1"]["total_s"], "speed_table_stages"
            )
            row["fc_macs_per_window"] = speed["network"][macs]
            rows.append(row)
    else:
        log("latency: SPP-net, the paper's network ...")
        for name, ranks in (("paper", None), (svd_name, settings.svd_ranks)):
            model = with_heads(paper, ranks)
            seconds = settings_median(lambda m=model: m([image], [windows]), settings)
            rows.append(_spp_row(name, model, settings.windows, seconds, "forward"))
    small = detector if detector is not None else demo_network(settings)
    for variant in settings.demo_variants:
        log(f"latency: SPP-net {variant.name} ...")
        model = variant.build(small)
        subset = windows[: variant.windows]
        seconds = settings_median(lambda m=model, w=subset: m([image], [w]), settings)
        rows.append(_spp_row(variant.name, model, variant.windows, seconds, "forward"))
    reference = next((r["seconds"] for r in rows if r["kind"] == "torchvision"), None)
    for row in rows:
        row["vs_first_torchvision"] = None if reference is None else row["seconds"] / reference
        row["meets_target"] = row["seconds"] <= settings.latency_target_s
    return {
        "target_s": settings.latency_target_s,
        "trained_detector": detector is not None,
        "rows": rows,
    }


def ranks_str(ranks: tuple[int, int]) -> str:
    return f"{ranks[0]}/{ranks[1]}"


def _spp_row(
    name: str, model: SPPNetDetector, windows: int, seconds: float, measured: str
) -> dict[str, Any]:
    config: DetectorConfig = model.config
    return {
        "name": name,
        "kind": "sppnet",
        "seconds": seconds,
        "measured": measured,
        "windows": windows,
        "backbone": config.backbone,
        "scales": list(config.scales),
        "fc_macs_per_window": count_linear_macs(model.box_head),
    }


# ----------------------------------------------------------------------------- mAP of variants
@torch.inference_mode()
def evaluate_variants(
    detector: SPPNetDetector,
    data: Any,
    classes: Sequence[str],
    variants: Sequence[Variant],
    log: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """VOC07 and VOC10 mAP of each variant of a trained detector on a dataset.

    The conv features of each image are computed once per distinct set of scales and shared by
    the variants that use it.

    Args:
        detector: the trained detector.
        data: a :class:`~sppnet.engine.detection.DetectionSet` (``len``, ``image(i)``,
            ``proposals[i]`` ranked, ``targets[i]``).
        classes: class names, ``classes[k - 1]`` for label ``k``.
        variants: what to evaluate.

    Returns:
        One dict per variant: ``name``, ``svd_ranks``, ``windows``, ``map_voc07``, ``map_voc10``.
    """
    from sppnet.evaluation import evaluate_voc

    models = [v.build(detector) for v in variants]
    predictions: list[list[dict[str, Tensor]]] = [[] for _ in variants]
    for i in range(len(data)):
        features: dict[tuple[tuple[int, ...], bool], Any] = {}
        for model, variant, preds in zip(models, variants, predictions, strict=True):
            key = (tuple(model.config.scales), variant.fused)
            if key not in features:
                features[key] = model.compute_features([data.image(i)])
            boxes = data.proposals[i][: variant.windows]
            (out,) = model.detect_from_features(features[key], [boxes])
            preds.append({k: v.cpu() for k, v in out.items()})
        if (i + 1) % 20 == 0:
            log(f"mAP: {i + 1}/{len(data)} images")
    results = []
    for variant, model, preds in zip(variants, models, predictions, strict=True):
        voc = evaluate_voc(preds, data.targets, classes)
        results.append(
            {
                "name": variant.name,
                "svd_ranks": None if variant.svd_ranks is None else list(variant.svd_ranks),
                "windows": variant.windows,
                "scales": list(model.config.scales),
                "map_voc07": voc.map("voc07"),
                "map_voc10": voc.map("voc10"),
            }
        )
    return results
