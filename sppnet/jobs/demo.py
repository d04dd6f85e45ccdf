"""The README's main job: SPP-net trained and evaluated end to end on the demo dataset.

On the packaged ``demo`` config (``sppnet/config/demo.yaml``) :func:`run_demo`:

1. builds the demo dataset (MNIST digits pasted on real photos, VOC layout) in ``OUT/data``
   (``data.demo`` in the config passes options to ``make_demo_dataset``, e.g. the split sizes);
2. computes selective-search proposals for the train and test splits (``OUT/proposals``, one
   cached file per image, in parallel worker processes);
3. trains the detector (:func:`~sppnet.engine.detection.run.train_from_config` into
   ``OUT/train``: fc6/fc7/fc8 fine-tuning on cached conv maps, end-to-end fine-tuning through
   ``roi_spp`` into the trunk's stride-16 blocks, the per-class SVMs with hard-negative mining,
   ridge box regression), reused when ``OUT/train`` holds a model trained with the same settings;
4. evaluates it on the test split in one pass, for the SVM, softmax and fused heads, with and
   without box regression, and at five test scales (the paper's 480..1200 rescaled by 480/688);
5. writes annotated test images (``OUT/detections/*.png``, detections scoring above
   :data:`DRAW_MIN_SCORE`; the evaluation uses all of them), the PR curves
   (``OUT/pr_voc07.png``), the evaluation JSON of the main model (``OUT/eval.json``) and a short
   report (``OUT/report.md``, ``OUT/report.json``) and the HTML evaluation report of the main
   model (``OUT/report/index.html``: per-class tables, PR curves, confusion matrix, error
   analysis, a gallery; :func:`sppnet.evaluation.write_report`). The main model is
   :data:`MAIN_VARIANT`: the softmax head, box regression and box voting, five test scales; it
   is saved as it is
   reported, five test scales in its config, to ``OUT/model`` (``sppnet eval --weights
   OUT/model`` gives the same figure).

``OUT/report.json`` keys (format ``sppnet-demo``, version 1): ``mAP`` (VOC07 11-point mAP of the
main model), ``main`` (the variant name), ``variants`` (name -> ``{"voc07": mAP, "voc10": mAP,
"coco_ap": AP@[.5:.95], "AP": {class: VOC07 AP}}``), ``seconds`` (stage -> wall seconds),
``machine`` (``cpus``, ``torch_threads``, ``load_average`` at start and end), ``config``.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from sppnet.config import ExperimentConfig, apply_overrides, load_config_file, scaled_scales
from sppnet.engine.detection.build import load_split
from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.detection.run import train_from_config
from sppnet.evaluation import (
    evaluate_coco,
    evaluate_voc,
    format_table,
    save_pr_curves,
    write_report,
    write_results_json,
)
from sppnet.inference import draw_predictions, predict_variants
from sppnet.utils.atomic import atomic_write_json, atomic_write_text

__all__ = [
    "MAIN_DESCRIPTION",
    "MAIN_HEAD",
    "MAIN_VARIANT",
    "DemoResult",
    "demo_config",
    "run_demo",
]

#: The variant whose mAP the job prints and whose detections it draws: the paper's headline
#: setting (box regression, five test scales; VOC07 59.2 in the paper) with the softmax head.
MAIN_HEAD = "softmax"
MAIN_VARIANT = f"{MAIN_HEAD}/5_scales_test"
MAIN_DESCRIPTION = "softmax head, box regression and voting, 5 test scales"
#: Softmax probability above which a detection is drawn on the annotated test images.
DRAW_MIN_SCORE = 0.5


@dataclass
class DemoResult:
    """What :func:`run_demo` returns: the ``report.json`` document and the main model's table."""

    report: dict[str, Any]
    table: str
    variants: dict[str, Any] = field(default_factory=dict)


def _ensure_demo_data(config: ExperimentConfig, out: Path) -> None:
    """Build the demo dataset at ``data.root`` with the ``data.demo`` options, reusing one built
    with the same options. One built with other options (an earlier default, say) is rebuilt, and
    the job's own proposal cache with it: the cache is keyed by image id, and the ids then name
    other images. A proposal cache elsewhere is the user's: then it is an error instead."""
    from sppnet.data.demo import make_demo_dataset

    root = Path(config.data["root"])
    options = config.data.get("demo", {})
    try:
        summary = make_demo_dataset(root, reuse=True, **options)
    except FileExistsError:
        summary = make_demo_dataset(root, overwrite=True, **options)
    if summary["reused"]:
        return
    proposals = Path(config.data["proposals_dir"])
    if proposals.exists() and any(proposals.iterdir()):
        if proposals.resolve() != (out / "proposals").resolve():
            raise FileExistsError(
                f"{root} was (re)built, but the proposal cache {proposals} holds proposals of "
                "the images that had these ids before; remove it or point data.proposals_dir "
                "elsewhere"
            )
        shutil.rmtree(proposals)


def demo_config(
    out: Path, config_file: str | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """The job's config: ``config_file``, or the packaged ``demo`` config with its data and
    proposals in ``out`` (written to ``out/config.yaml``), then the ``--set`` overrides.

    Raises:
        ValueError: an unreadable config, a bad override, or stages that do not train both heads
            the job compares.
    """
    if config_file:
        config = load_config_file(config_file)
    else:
        packaged = load_config_file("demo")
        data = {**packaged.data, "root": str(out / "data"), "proposals_dir": str(out / "proposals")}
        config = ExperimentConfig(packaged.model, packaged.train, data)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    config = apply_overrides(config, overrides)
    stages = set(config.train.stages)
    if "svm" not in stages or not stages & {"finetune_fc", "end_to_end"}:
        raise ValueError(
            "train.stages must train both heads it compares: 'svm' and "
            f"'finetune_fc' or 'end_to_end' (got {sorted(stages)})"
        )
    return config


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _num(value: float | None) -> float | None:
    """JSON-safe: NaN (undefined, e.g. a class absent from the split) becomes None (null)."""
    return None if value is None or math.isnan(value) else float(value)


def variant_summary(voc: Any, coco: Any) -> dict[str, Any]:
    """One ``report.json`` variant: VOC07/VOC10 mAP, COCO AP (or None), VOC07 AP per class."""
    return {
        "voc07": _num(voc.map("voc07")),
        "voc10": _num(voc.map("voc10")),
        "coco_ap": None if coco is None else _num(coco.metrics["AP"]),
        "AP": {k: _num(v) for k, v in voc.ap("voc07").items()},
    }


def fmt(value: float | None) -> str:
    """A mAP for printing: four decimals, ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.4f}"


class _Stages:
    """Wall seconds per stage of the job, printed as each ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._start, 2)
        print(f"[demo] {name}: {self.seconds[name]:.1f} s", flush=True)
        self._start = time.perf_counter()


def _score_variants(
    preds: dict[str, list[dict[str, Any]]],
    test: DetectionSet,
    classes: Sequence[str],
    suffix: str,
    results: dict[str, tuple[Any, Any]],
    variants: dict[str, Any],
) -> None:
    """VOC (and for the main head COCO) scores of each head's detections, into ``results`` and
    ``variants`` under ``<head><suffix>``."""
    for name, p in preds.items():
        voc = evaluate_voc(p, test.targets, classes)
        coco = evaluate_coco(p, test.targets, classes) if name == MAIN_HEAD else None
        results[f"{name}{suffix}"] = (voc, coco)
        variants[f"{name}{suffix}"] = variant_summary(voc, coco)


def run_demo(
    config: ExperimentConfig,
    out: Path,
    *,
    compare: bool = False,
    workers: int | None = None,
    progress: bool = True,
    device: str | None = None,
    amp: str = "off",
) -> DemoResult:
    """Run the job (see the module docstring) and write its outputs to ``out``: training on
    ``device`` (default: the GPU if there is one), evaluation under autocast ``amp`` (training's
    mixed precision is the config's ``train.amp``)."""
    machine = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": {"start": _load_average()},
    }
    t_all = time.perf_counter()
    stages = _Stages()

    _ensure_demo_data(config, out)
    stages.done("dataset")

    train = load_split(config, config.data["train_split"], workers=workers, progress=progress)
    test = load_split(config, config.data["test_split"], workers=workers, progress=progress)
    stages.done("proposals")

    trained = train_from_config(
        config, out / "train", train, resume=True, reuse=True, progress=progress, device=device
    )
    detector, heads = trained.detector, trained.heads
    stages.done("train (reused)" if trained.reused else "train")

    classes = list(detector.config.class_names or [str(i) for i in range(1, 11)])
    results: dict[str, tuple[Any, Any]] = {}
    variants: dict[str, Any] = {}
    preds, times = predict_variants(detector, test, heads, progress=progress, amp=amp)
    _score_variants(preds, test, classes, "", results, variants)
    stages.seconds["detect_per_image"] = round((times["conv"] + times["rest"]) / len(test), 4)
    stages.done("evaluate")

    # 5 scales at test time (the paper's five, rescaled so 688 -> the demo's single scale)
    multi = copy.deepcopy(detector)
    multi.set_scales(scaled_scales(detector.config.scales[0]))
    preds5, _ = predict_variants(
        multi, test, heads, box_regression=(True,), progress=progress, amp=amp
    )
    _score_variants(preds5, test, classes, "/5_scales_test", results, variants)
    if multi.config.scoring == MAIN_HEAD:
        # The headline model as it is reported (its test scales in its config), so that
        # `sppnet eval --weights OUT/model` reproduces the main figure.
        multi.save_pretrained(out / "model")
    stages.done("evaluate_5_scales")

    if compare:
        _compare(config, train, test, classes, out, variants, progress)
        stages.done("compare")

    voc, coco = results[MAIN_VARIANT]
    seconds = stages.seconds
    write_results_json(out / "eval.json", voc, coco, {"variant": MAIN_VARIANT, "seconds": seconds})
    save_pr_curves(voc, out / "pr_voc07.png", "voc07")
    main_preds = preds5[MAIN_HEAD]
    draw_predictions(test, main_preds, classes, out / "detections", min_score=DRAW_MIN_SCORE)
    run_info = {
        "model": f"{out / 'model'} ({MAIN_DESCRIPTION})",
        "data": f"{config.data['root']} ({config.data['test_split']}, {len(test)} images)",
        "scales": list(multi.config.scales),
        "settings": {"variant": MAIN_VARIANT, "box_voting_iou": multi.config.box_voting_iou},
        "seconds": dict(seconds),
    }
    write_report(
        out / "report",
        main_preds,
        test.targets,
        classes,
        test.image,
        run_info,
        score_threshold=DRAW_MIN_SCORE,
        voc=voc,
        coco=coco,
        compute_coco=False,
    )
    stages.done("write")
    seconds["total"] = round(time.perf_counter() - t_all, 2)
    machine["load_average"]["end"] = _load_average()
    report = {
        "format": "sppnet-demo",
        "version": 1,
        "mAP": variants[MAIN_VARIANT]["voc07"],
        "main": MAIN_VARIANT,
        "variants": variants,
        "seconds": seconds,
        "machine": machine,
        "config": config.to_dict(),
    }
    atomic_write_json(out / "report.json", report)
    table = format_table(voc, coco)
    atomic_write_text(out / "report.md", _markdown(report, table))
    return DemoResult(report, table, variants)


def _compare(
    config: ExperimentConfig,
    train: DetectionSet,
    test: DetectionSet,
    classes: Sequence[str],
    out: Path,
    variants: dict[str, Any],
    progress: bool,
) -> None:
    """Train a 5-scale model and an fc-only one (the trunk frozen, as in the paper); add their
    test mAPs to ``variants``."""
    five = scaled_scales(config.model.scales[0])
    runs = {
        "5_scales_trained": ExperimentConfig(
            config.model.replace(scales=five), config.train, config.data
        ),
        "fc_only": ExperimentConfig(
            config.model,
            config.train.replace(
                stages=tuple(s for s in config.train.stages if s != "end_to_end"),
                epochs_fc=config.train.epochs_fc + config.train.epochs_e2e,
            ),
            config.data,
        ),
    }
    for name, cfg in runs.items():
        trained = train_from_config(
            cfg, out / f"train_{name}", train, resume=True, reuse=True, progress=progress
        )
        preds, _ = predict_variants(
            trained.detector, test, trained.heads, box_regression=(True,), progress=progress
        )
        for head, p in preds.items():
            variants[f"{head}/{name}"] = variant_summary(
                evaluate_voc(p, test.targets, classes), None
            )


def _markdown(report: dict[str, Any], table: str) -> str:
    lines = [
        "# SPP-net demo report",
        "",
        f"VOC07 11-point mAP@0.5 of the main model ({MAIN_DESCRIPTION}): "
        f"**{fmt(report['mAP'])}** on the test split.",
        "",
        "## Main model, per class",
        "",
        "```",
        table,
        "```",
        "",
        "## Variants (VOC07 mAP, VOC10 mAP)",
        "",
        "| variant | VOC07 mAP | VOC10 mAP |",
        "|---|---|---|",
    ]
    for name, v in report["variants"].items():
        lines.append(f"| {name} | {fmt(v['voc07'])} | {fmt(v['voc10'])} |")
    lines += ["", "## Seconds per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["seconds"].items()]
    m = report["machine"]
    lines += [
        "",
        f"Machine: {m['cpus']} CPUs, {m['torch_threads']} torch threads, load average "
        f"{m['load_average']['start']} at the start and {m['load_average']['end']} at the end.",
        "",
    ]
    return "\n".join(lines)
