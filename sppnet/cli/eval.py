"""``sppnet eval``: PASCAL VOC and COCO AP of a trained SPP-net detector on a split of a COCO,
YOLO or VOC folder (``--format``, detected by default), or of any detector's COCO results file
(``--from-results``, no model run). ``--results PATH`` writes the detections as a COCO results
file.

Prints a table (per class: VOC07 11-point AP, VOC10 area AP, COCO AP, AP50, counts) and the
means; ``--json PATH`` writes the results document of :mod:`sppnet.evaluation.report` (keys
``voc07.mAP``, ``voc07.AP.<class>``, ``voc10...``, ``coco.AP``..., documented in
docs/evaluation.md) with, under ``extra``: ``weights``, ``scoring``, ``scales``,
``proposals_per_image``, ``seconds`` (``conv``, ``pool_fc_nms``, ``per_image``).
``--save-model DIR`` saves the detector as evaluated (``--scales`` in its config: a model that
reproduces these figures with no flags). ``--plots DIR`` writes the precision/recall curves
(``pr_voc07.png``), ``--draw DIR`` the annotated images, ``--report DIR`` an HTML report with
per-class tables, PR curves, the confusion matrix, error analysis and a gallery
(:func:`sppnet.evaluation.write_report`; docs/evaluation.md).

Example::

    sppnet eval --weights runs/demo/model --data runs/demo/data --split test \\
        --proposals runs/demo/proposals --json runs/demo/eval.json --plots runs/demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMAND = ("eval",)
HELP = "Evaluate a trained detector: VOC07/VOC10 AP per class, COCO AP, PR curves, JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="a saved detector (folder)")
    parser.add_argument("--data", required=True, help="a COCO, YOLO or VOC dataset folder")
    parser.add_argument(
        "--format", choices=("auto", "coco", "yolo", "voc"), default="auto", help="of --data"
    )
    parser.add_argument("--split", default="test", help="the split to score (test)")
    parser.add_argument(
        "--proposals",
        help="proposal cache folder (default: DATA/proposals, for COCO/YOLO DATA/proposals/SPLIT);"
        " missing files are computed",
    )
    parser.add_argument(
        "--results",
        metavar="PATH",
        help="also write the detections as a COCO results file (image_id, category_id in the "
        "dataset's own ids, bbox xywh, score)",
    )
    parser.add_argument(
        "--from-results",
        metavar="PATH",
        help="score this COCO results file (any detector's) instead of running a model",
    )
    parser.add_argument("--max-proposals", type=int, default=2000, help="per image (2000)")
    parser.add_argument(
        "--scales", type=int, nargs="+", help="test scales (shorter sides) instead of the model's"
    )
    parser.add_argument(
        "--save-model",
        metavar="DIR",
        help="also save the detector as evaluated (--scales in its config) here, so that "
        "sppnet eval --weights DIR reproduces these figures as it is",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--plots", metavar="DIR", help="write PR curves (PNG) here")
    parser.add_argument("--draw", metavar="DIR", help="write annotated images here")
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="write an HTML evaluation report (index.html + report.json) here",
    )
    parser.add_argument("--no-coco", action="store_true", help="skip COCO AP")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument(
        "--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast (off)"
    )
    parser.add_argument("--workers", type=int, default=None, help="proposal worker processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.engine.detection.build import load_dataset_split
    from sppnet.evaluation import format_table, write_coco_results
    from sppnet.inference import draw_threshold, evaluate
    from sppnet.models.detector import SPPNetDetector

    progress = not args.no_progress
    if args.from_results:
        return _score_results_file(args)
    if not args.weights:
        print("sppnet eval: give --weights (a saved detector) or --from-results", file=sys.stderr)
        return 2
    try:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        detector = SPPNetDetector.from_pretrained(args.weights, map_location=device)
        if args.scales:
            detector.set_scales(args.scales)
        data, classes = load_dataset_split(
            args.data,
            args.split,
            detector.config.class_names,
            args.proposals,
            format=args.format,
            max_proposals=args.max_proposals,
            workers=args.workers,
            progress=progress,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"sppnet eval: {err}", file=sys.stderr)
        return 2
    voc, coco, preds, seconds = evaluate(
        detector, data, classes, coco=not args.no_coco, progress=progress, amp=args.amp
    )
    print(format_table(voc, coco))
    print(
        f"mAP (VOC07 11-point) {voc.map('voc07'):.4f}   scoring {detector.config.scoring}   "
        f"scales {list(detector.config.scales)}   {seconds['per_image']:.3f} s/image"
    )
    extra = {
        "weights": str(args.weights),
        "split": args.split,
        "scoring": detector.config.scoring,
        "scales": list(detector.config.scales),
        "device": str(device),
        "amp": args.amp,
        "proposals_per_image": sum(p.shape[0] for p in data.proposals) / max(1, len(data)),
        "seconds": seconds,
    }
    print(f"data: {args.data} ({data.dataset.format}, split {args.split}, {len(data)} images)")
    if args.save_model:
        saved = detector.save_pretrained(args.save_model)
        print(f"model (scales {list(detector.config.scales)}): {saved}")
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        written = write_coco_results(
            args.results, preds, data.dataset.result_image_ids, data.dataset.category_ids
        )
        print(f"COCO results: {written} detections -> {args.results}")
    run_info = {
        "model": str(args.weights),
        "data": f"{args.data} ({args.split})",
        "scales": list(detector.config.scales),
        "settings": {
            "scoring": detector.config.scoring,
            "proposals_per_image": extra["proposals_per_image"],
        },
        "seconds": seconds,
    }
    threshold = draw_threshold(detector.config.scoring)
    _write_outputs(args, voc, coco, preds, data, classes, extra, run_info, threshold)
    return 0


def _write_outputs(
    args: argparse.Namespace,
    voc,
    coco,
    preds: list[dict],
    images,
    classes: list[str],
    extra: dict,
    run_info: dict,
    threshold: float,
) -> None:
    """``--json``, ``--plots``, ``--report`` and ``--draw``, the same for a model's run and for a
    results file. ``images`` has ``image(i)`` and ``targets`` (a ``DetectionSet`` or
    :class:`_ScoredDataset`); detections scoring above ``threshold`` are shown and counted."""
    from sppnet.evaluation import save_pr_curves, write_report, write_results_json
    from sppnet.inference import draw_predictions

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_results_json(args.json, voc, coco, extra)
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        save_pr_curves(voc, Path(args.plots) / "pr_voc07.png", "voc07")
    if args.report:
        path = write_report(
            args.report,
            preds,
            images.targets,
            classes,
            images.image,
            run_info,
            score_threshold=threshold,
            voc=voc,
            coco=coco,
            compute_coco=False,
        )
        print(f"report: {path}")
    if args.draw:
        draw_predictions(images, preds, classes, Path(args.draw), threshold)


#: Flags that need a model run, refused with ``--from-results`` rather than ignored.
_MODEL_ONLY = (
    ("weights", "--weights"),
    ("scales", "--scales"),
    ("save_model", "--save-model"),
    ("results", "--results"),
    ("proposals", "--proposals"),
    ("device", "--device"),
    ("workers", "--workers"),
)


class _ScoredDataset:
    """What ``--draw`` and ``--report`` read of a dataset scored from a results file: its
    ``image(i)`` and its ``targets`` (no proposals, no model)."""

    def __init__(self, dataset, targets: list[dict]) -> None:
        self.dataset, self.targets = dataset, targets

    def image(self, index: int):
        return self.dataset[index][0]


def _score_results_file(args: argparse.Namespace) -> int:
    """``--from-results``: VOC and COCO AP of a results file on a dataset split, and the
    ``--json``, ``--plots``, ``--report`` and ``--draw`` outputs as for a model's run (shown
    detections: score >= 0.5)."""
    from sppnet.data import AnnotationError, DatasetLayoutError, open_detection_dataset
    from sppnet.evaluation import (
        evaluate_coco,
        evaluate_voc,
        format_table,
        read_coco_results,
    )

    given = [flag for name, flag in _MODEL_ONLY if getattr(args, name, None) is not None]
    if args.amp != "off":
        given.append("--amp")
    if given:
        print(
            f"sppnet eval: --from-results scores a results file without running a model; "
            f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} a model run "
            "(drop them, or drop --from-results)",
            file=sys.stderr,
        )
        return 2
    try:
        dataset = open_detection_dataset(args.data, args.split, args.format)
        preds = read_coco_results(args.from_results, dataset.result_image_ids, dataset.category_ids)
    except (ValueError, FileNotFoundError, DatasetLayoutError, AnnotationError) as err:
        print(f"sppnet eval: {err}", file=sys.stderr)
        return 2
    targets = [dataset.get_target(i) for i in range(len(dataset))]
    classes = list(dataset.classes)
    voc = evaluate_voc(preds, targets, classes)
    coco = None if args.no_coco else evaluate_coco(preds, targets, classes)
    print(format_table(voc, coco))
    print(
        f"mAP (VOC07 11-point) {voc.map('voc07'):.4f}   results {args.from_results}   data "
        f"{args.data} ({dataset.format}, split {args.split}, {len(dataset)} images)"
    )
    extra = {"results": str(args.from_results), "split": args.split, "format": dataset.format}
    run_info = {"results": str(args.from_results), "data": f"{args.data} ({args.split})"}
    scored = _ScoredDataset(dataset, targets)
    _write_outputs(args, voc, coco, preds, scored, classes, extra, run_info, 0.5)
    return 0
