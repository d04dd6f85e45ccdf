"""``sppnet eval``: PASCAL VOC and COCO AP of a trained SPP-net detector on a VOC-layout split.

Prints a table (per class: VOC07 11-point AP, VOC10 area AP, COCO AP, AP50, counts) and the
means; ``--json PATH`` writes the results document of :mod:`sppnet.evaluation.report` (keys
``voc07.mAP``, ``voc07.AP.<class>``, ``voc10...``, ``coco.AP``..., documented in
docs/evaluation.md) with, under ``extra``: ``weights``, ``scoring``, ``scales``,
``proposals_per_image``, ``seconds`` (``conv``, ``pool_fc_nms``, ``per_image``).
``--plots DIR`` writes the precision/recall curves (``pr_voc07.png``), ``--draw DIR`` the
annotated images.

Example::

    sppnet eval --weights runs/demo/model --data runs/demo/data --split test \\
        --proposals runs/demo/proposals --json runs/demo/eval.json --plots runs/demo
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMAND = ("eval",)
HELP = "Evaluate a trained detector: VOC07/VOC10 AP per class, COCO AP, PR curves, JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="a saved detector (folder)")
    parser.add_argument("--data", required=True, help="VOC-layout dataset folder")
    parser.add_argument("--split", default="test", help="ImageSets/Main/SPLIT.txt (test)")
    parser.add_argument(
        "--proposals",
        help="proposal cache folder (default: DATA/proposals); missing files are computed",
    )
    parser.add_argument("--max-proposals", type=int, default=2000, help="per image (2000)")
    parser.add_argument(
        "--scales", type=int, nargs="+", help="test scales (shorter sides) instead of the model's"
    )
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--plots", metavar="DIR", help="write PR curves (PNG) here")
    parser.add_argument("--draw", metavar="DIR", help="write annotated images here")
    parser.add_argument("--no-coco", action="store_true", help="skip COCO AP")
    parser.add_argument("--workers", type=int, default=None, help="proposal worker processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def evaluate(
    detector: Any,
    data: Any,
    classes: Sequence[str],
    *,
    coco: bool = True,
    progress: bool = True,
) -> tuple[Any, Any, list[dict[str, Any]], dict[str, float]]:
    """Detect on every image of a :class:`~sppnet.engine.detection.DetectionSet` and score it.

    Returns:
        ``(voc_result, coco_result_or_None, predictions, seconds)`` where ``seconds`` holds
        ``conv``, ``pool_fc_nms`` (totals) and ``per_image``.
    """
    from sppnet.engine.detection import predict
    from sppnet.evaluation import evaluate_coco, evaluate_voc

    preds, times = predict(detector, data, progress=progress)
    voc = evaluate_voc(preds, data.targets, classes)
    coco_result = evaluate_coco(preds, data.targets, classes) if coco else None
    n = max(1, len(data))
    seconds = {
        "conv": times["conv"],
        "pool_fc_nms": times["pool_fc_nms"],
        "per_image": (times["conv"] + times["pool_fc_nms"]) / n,
    }
    return voc, coco_result, preds, seconds


def draw(
    data: Any,
    preds: Sequence[dict[str, Any]],
    classes: Sequence[str],
    out: Path,
    min_score: float,
    limit: int | None = None,
) -> list[Path]:
    """Annotated copies of the images (detections scoring above ``min_score``), as PNG."""
    from sppnet.utils.atomic import atomic_write_bytes
    from sppnet.utils.draw import draw_detections

    out.mkdir(parents=True, exist_ok=True)
    written = []
    count = len(preds) if limit is None else min(limit, len(preds))
    for i in range(count):
        keep = preds[i]["scores"] > min_score
        image = draw_detections(
            data.image(i),
            preds[i]["boxes"][keep],
            preds[i]["labels"][keep],
            preds[i]["scores"][keep],
            classes,
        )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = out / f"{data.targets[i]['image_id']}.png"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    from sppnet.cli.train import fill_proposals, read_classes
    from sppnet.data.voc import VOCDetection
    from sppnet.engine.detection import DetectionSet
    from sppnet.evaluation import format_table, save_pr_curves, write_results_json
    from sppnet.models.detector import SPPNetDetector
    from sppnet.proposals import ProposalCache

    progress = not args.no_progress
    root = Path(args.data)
    try:
        detector = SPPNetDetector.from_pretrained(args.weights)
        classes = read_classes(root, detector.config.class_names)
        dataset = VOCDetection(root, args.split, classes)
        if args.scales:
            detector.set_scales(args.scales)
    except (ValueError, FileNotFoundError) as err:
        print(f"sppnet eval: {err}", file=sys.stderr)
        return 2
    proposals_dir = Path(args.proposals) if args.proposals else root / "proposals"
    if (proposals_dir / "proposals.json").is_file():
        cache = ProposalCache.from_directory(proposals_dir)
    else:
        from sppnet.cli.train import proposal_cache

        cache = proposal_cache(proposals_dir, None)
    fill_proposals(cache, root, [args.split], args.workers, progress)
    data = DetectionSet(dataset, cache, args.max_proposals, keep_images=True, progress=progress)
    voc, coco, preds, seconds = evaluate(
        detector, data, classes, coco=not args.no_coco, progress=progress
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
        "proposals_per_image": sum(p.shape[0] for p in data.proposals) / max(1, len(data)),
        "seconds": seconds,
    }
    if args.json:
        write_results_json(args.json, voc, coco, extra)
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        save_pr_curves(voc, Path(args.plots) / "pr_voc07.png", "voc07")
    if args.draw:
        threshold = 0.0 if detector.config.scoring == "svm" else 0.5
        draw(data, preds, classes, Path(args.draw), threshold)
    return 0
