"""``sppnet demo``: the README's main job - SPP-net trained and evaluated end to end.

On its embedded default (:data:`DEMO_CONFIG`, the same as ``configs/demo.yaml``) it:

1. builds the demo dataset (MNIST digits pasted on real photos, VOC layout) in ``OUT/data``
   (``data.demo`` in the config passes options to ``make_demo_dataset``, e.g. the split sizes);
2. computes selective-search proposals for the train and test splits (``OUT/proposals``, one
   cached file per image, in parallel worker processes);
3. trains the detector (``OUT/train``: fc6/fc7/fc8 fine-tuning on cached conv maps, end-to-end
   fine-tuning through ``roi_spp`` into the trunk's stride-16 blocks, the per-class SVMs with
   hard-negative mining, ridge box regression) and saves it to ``OUT/train/model`` (softmax head)
   and ``OUT/train/model_svm`` (the same network with the SVMs);
4. evaluates it on the test split in one pass, for the SVM, softmax and fused heads, with and
   without box regression, and at five test scales (the paper's 480..1200 rescaled by 480/688);
5. writes annotated test images (``OUT/detections/*.png``, detections scoring above
   :data:`DRAW_MIN_SCORE`; the evaluation uses all of them), the PR curves
   (``OUT/pr_voc07.png``), the evaluation JSON of the main model (``OUT/eval.json``) and a short
   report (``OUT/report.md``, ``OUT/report.json``), and prints the mAP. The main model is
   :data:`MAIN_VARIANT`: the softmax head, box regression and box voting, five test scales (the
   paper's headline setting had SVMs; fine-tuned end to end, the softmax head is as good or
   better here, as Fast R-CNN found: docs/detector.md); every other variant is in the report,
   among them the two heads fused (:class:`~sppnet.models.score_fusion.SoftmaxSVMFusion`).

Every stage is reused on a second run when its output is there and was made with the same
settings (the dataset, the proposal files, the trained model); ``--fresh`` starts over.
``--compare`` also trains a 5-scale model and one whose trunk stays frozen (fc layers only, the
paper's fine-tuning) and adds them to the report (several more minutes).

``OUT/report.json`` keys (format ``sppnet-demo``, version 1): ``mAP`` (VOC07 11-point mAP of the
main model), ``main`` (the variant name), ``variants`` (name -> ``{"voc07": mAP, "voc10": mAP,
"coco_ap": AP@[.5:.95], "AP": {class: VOC07 AP}}``), ``seconds`` (stage -> wall seconds),
``machine`` (``cpus``, ``torch_threads``, ``load_average`` at start and end), ``config``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

COMMAND = ("demo",)
HELP = "The main job: build the demo data, train SPP-net, evaluate it, write a report."

#: The variant whose mAP the job prints and whose detections it draws: the paper's headline
#: setting (box regression, five test scales; VOC07 59.2 in the paper) with the softmax head.
MAIN_HEAD = "softmax"
MAIN_VARIANT = f"{MAIN_HEAD}/5_scales_test"
MAIN_DESCRIPTION = "softmax head, box regression and voting, 5 test scales"
#: Softmax probability above which a detection is drawn on the annotated test images.
DRAW_MIN_SCORE = 0.5

#: The embedded default (kept identical to configs/demo.yaml; a test checks it).
DEMO_CONFIG: dict[str, Any] = {
    "model": {
        "preset": "demo",
        "num_classes": 10,
        "class_names": [str(d) for d in range(10)],
        "fc_dims": [512, 512],
        "scales": [480],
        "scoring": "softmax",
        "box_voting_iou": 0.5,
    },
    "train": {
        "stages": ["finetune_fc", "end_to_end", "svm", "box_regression"],
        "epochs_fc": 2,
        "lr_fc": 0.01,
        "epochs_e2e": 7,
        "lr_e2e": 0.01,
        "lr_e2e_trunk": 0.005,
        "trunk_frozen_prefix": 7,
        "train_scales": [402, 480, 560],
        "images_per_batch": 2,
        "windows_per_batch": 512,
        "fg_fraction": 0.5,
        "max_proposals": 2000,
        "svm_rounds": 2,
    },
    "data": {
        "root": "runs/demo/data",
        "train_split": "train",
        "test_split": "test",
        "proposals_dir": "runs/demo/proposals",
        "proposals": {"mode": "fast", "shorter_side": 224, "max_proposals": 2000},
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (runs/demo)")
    parser.add_argument("--config", help="a config file instead of the embedded default")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set train.epochs_fc=4",
    )
    parser.add_argument("--fresh", action="store_true", help="recompute every stage")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also train a 5-scale model and an fc-only one and compare them",
    )
    parser.add_argument("--workers", type=int, default=None, help="proposal worker processes")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice; 1 is much faster on an oversubscribed CPU)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", metavar="PATH", help="also write report.json here")


def _config(args: argparse.Namespace, out: Path):
    from sppnet.cli.train import apply_overrides
    from sppnet.config import load_config_file

    if args.config:
        config = load_config_file(args.config)
    else:
        raw = copy.deepcopy(DEMO_CONFIG)
        raw["data"]["root"] = str(out / "data")
        raw["data"]["proposals_dir"] = str(out / "proposals")
        path = out / "config.yaml"
        import yaml

        from sppnet.utils.atomic import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False))
        config = load_config_file(path)
    return apply_overrides(config, args.overrides)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _stage(name: str, seconds: dict[str, float], start: float) -> None:
    seconds[name] = round(time.perf_counter() - start, 2)
    print(f"[demo] {name}: {seconds[name]:.1f} s", flush=True)


def _num(value: float | None) -> float | None:
    """JSON-safe: NaN (undefined, e.g. a class absent from the split) becomes None (null)."""
    return None if value is None or math.isnan(value) else float(value)


def _variant_summary(voc: Any, coco: Any) -> dict[str, Any]:
    return {
        "voc07": _num(voc.map("voc07")),
        "voc10": _num(voc.map("voc10")),
        "coco_ap": None if coco is None else _num(coco.metrics["AP"]),
        "AP": {k: _num(v) for k, v in voc.ap("voc07").items()},
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _train_variant(config: Any, train: Any, output: Path, progress: bool):
    """Train one detector (reusing ``output/model`` when it was made with the same config).

    Returns ``(detector, heads, reused)``: the detector with the config's scoring head, and
    ``{"svm": LinearSVMs, "softmax": SoftmaxHead, "softmax+svm": SoftmaxSVMFusion}`` (the same
    network serves all three; the single heads the config does not name are saved as
    ``output/model_<head>``).
    """
    from sppnet.cli.train import save_single_heads
    from sppnet.engine.detection import train_detector
    from sppnet.models.detector import SPPNetDetector
    from sppnet.models.score_fusion import SoftmaxSVMFusion
    from sppnet.utils.atomic import atomic_write_json

    own = config.model.scoring
    others = [h for h in ("softmax", "svm") if h != own]
    stamp = output / "fingerprint.json"
    fingerprint = _fingerprint({"model": config.model.to_dict(), "train": config.train.to_dict()})
    if stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
        try:
            model = SPPNetDetector.from_pretrained(output / "model")
            if isinstance(model.box_predictor, SoftmaxSVMFusion):
                fused = model.box_predictor
                heads = {"svm": fused.svms, "softmax": fused.softmax, "softmax+svm": fused}
            else:
                heads = {own: model.box_predictor}
                for h in others:
                    heads[h] = SPPNetDetector.from_pretrained(output / f"model_{h}").box_predictor
                heads["softmax+svm"] = SoftmaxSVMFusion(heads["softmax"], heads["svm"])
            return model, heads, True
        except (ValueError, FileNotFoundError) as err:
            print(f"[demo] cached model unusable ({err}); retraining", file=sys.stderr)
    import torch

    torch.manual_seed(config.train.seed)
    detector = SPPNetDetector(config.model)
    trained = train_detector(detector, train, config.train, output, resume=True, progress=progress)
    heads = {
        "svm": trained.svm,
        "softmax": trained.softmax,
        "softmax+svm": SoftmaxSVMFusion(trained.softmax, trained.svm),
    }
    detector.save_pretrained(output / "model")
    save_single_heads(detector, {"softmax": trained.softmax, "svm": trained.svm}, output)
    atomic_write_json(
        output / "train_summary.json", {"stages": [log.to_dict() for log in trained.logs]}
    )
    atomic_write_json(stamp, {"fingerprint": fingerprint})
    return detector, heads, False


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.cli.eval import draw
    from sppnet.cli.train import load_split
    from sppnet.data.demo import make_demo_dataset
    from sppnet.engine.detection import predict_variants
    from sppnet.evaluation import (
        evaluate_coco,
        evaluate_voc,
        format_table,
        save_pr_curves,
        write_results_json,
    )
    from sppnet.config import scaled_scales
    from sppnet.utils.atomic import atomic_write_json, atomic_write_text

    out = Path(args.out)
    progress = not args.no_progress
    if args.threads is not None:
        if args.threads < 1:
            print("sppnet demo: --threads must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        config = _config(args, out)
    except ValueError as err:
        print(f"sppnet demo: {err}", file=sys.stderr)
        return 2
    stages = set(config.train.stages)
    if "svm" not in stages or not stages & {"finetune_fc", "end_to_end"}:
        print(
            "sppnet demo: train.stages must train both heads it compares: 'svm' and "
            f"'finetune_fc' or 'end_to_end' (got {sorted(stages)})",
            file=sys.stderr,
        )
        return 2
    machine = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": {"start": _load_average()},
    }
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    # 1. the dataset
    t = time.perf_counter()
    root = Path(config.data["root"])
    if not (root / "demo.json").is_file():
        make_demo_dataset(root, overwrite=root.exists(), **config.data.get("demo", {}))
    _stage("dataset", seconds, t)

    # 2. proposals (cached per image) and the two splits in memory
    t = time.perf_counter()
    train = load_split(config, config.data["train_split"], workers=args.workers, progress=progress)
    test = load_split(config, config.data["test_split"], workers=args.workers, progress=progress)
    _stage("proposals", seconds, t)

    # 3. training (reused when the model exists with the same settings)
    t = time.perf_counter()
    detector, heads, reused = _train_variant(config, train, out / "train", progress)
    _stage("train (reused)" if reused else "train", seconds, t)

    # 4. evaluation: both heads, with/without box regression, in one pass
    t = time.perf_counter()
    classes = list(detector.config.class_names or [str(i) for i in range(1, 11)])
    preds, times = predict_variants(detector, test, heads, progress=progress)
    variants: dict[str, Any] = {}
    results = {}
    for name, p in preds.items():
        voc = evaluate_voc(p, test.targets, classes)
        coco = evaluate_coco(p, test.targets, classes) if name == MAIN_HEAD else None
        results[name] = (voc, coco)
        variants[name] = _variant_summary(voc, coco)
    seconds["detect_per_image"] = round((times["conv"] + times["rest"]) / len(test), 4)
    _stage("evaluate", seconds, t)

    # 5 scales at test time (the paper's five, rescaled so 688 -> the demo's single scale)
    t = time.perf_counter()
    five = scaled_scales(detector.config.scales[0])
    multi = copy.deepcopy(detector)
    multi.set_scales(five)
    preds5, _ = predict_variants(multi, test, heads, box_regression=(True,), progress=progress)
    for name, p in preds5.items():
        voc = evaluate_voc(p, test.targets, classes)
        coco = evaluate_coco(p, test.targets, classes) if name == MAIN_HEAD else None
        results[f"{name}/5_scales_test"] = (voc, coco)
        variants[f"{name}/5_scales_test"] = _variant_summary(voc, coco)
        preds[f"{name}/5_scales_test"] = p
    _stage("evaluate_5_scales", seconds, t)

    if args.compare:
        t = time.perf_counter()
        _compare(config, train, test, classes, out, variants, progress)
        _stage("compare", seconds, t)

    # 5. outputs
    t = time.perf_counter()
    voc, coco = results[MAIN_VARIANT]
    write_results_json(out / "eval.json", voc, coco, {"variant": MAIN_VARIANT, "seconds": seconds})
    save_pr_curves(voc, out / "pr_voc07.png", "voc07")
    draw(test, preds[MAIN_VARIANT], classes, out / "detections", min_score=DRAW_MIN_SCORE)
    _stage("write", seconds, t)
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
    if args.json:
        atomic_write_json(args.json, report)
    table = format_table(voc, coco)
    atomic_write_text(out / "report.md", _markdown(report, table))
    print(table)
    for name, v in variants.items():
        print(f"  {name:<28} VOC07 mAP {_fmt(v['voc07'])}")
    print(
        f"VOC07 mAP@0.5 ({MAIN_DESCRIPTION}): {_fmt(report['mAP'])}   "
        f"total {seconds['total']:.0f} s   report: {out / 'report.md'}"
    )
    return 0


def _compare(config, train, test, classes, out, variants, progress) -> None:
    """Train a 5-scale model and an fc-only one (the trunk frozen, as in the paper); add their
    test mAPs to ``variants``."""
    from sppnet.engine.detection import predict_variants
    from sppnet.evaluation import evaluate_voc
    from sppnet.config import ExperimentConfig, scaled_scales

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
        detector, heads, _ = _train_variant(cfg, train, out / f"train_{name}", progress)
        preds, _ = predict_variants(
            detector, test, heads, box_regression=(True,), progress=progress
        )
        for head, p in preds.items():
            variants[f"{head}/{name}"] = _variant_summary(
                evaluate_voc(p, test.targets, classes), None
            )


def _markdown(report: dict[str, Any], table: str) -> str:
    lines = [
        "# SPP-net demo report",
        "",
        f"VOC07 11-point mAP@0.5 of the main model ({MAIN_DESCRIPTION}): "
        f"**{_fmt(report['mAP'])}** on the test split.",
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
        lines.append(f"| {name} | {_fmt(v['voc07'])} | {_fmt(v['voc10'])} |")
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
