"""``sppnet data check``: validate a COCO, YOLO or VOC dataset and report what is wrong.

    sppnet data check ROOT [--format auto|coco|yolo|voc] [--split S ...] [--classes a,b,...]
                           [--decode] [--no-exif] [--json PATH]
    sppnet data check --coco instances.json --images IMAGE_DIR [--decode] [--json PATH]

The format is detected from the folder unless ``--format`` is given (see
:func:`sppnet.data.formats.detect_format`); without ``--split`` every split of the folder is
checked. Every record is read with ``on_invalid="skip"`` so that all problems are listed at once
(each with its file and reason); ``--decode`` also decodes every image (finds files truncated
after a valid header). VOC classes: ``--classes``, else :func:`sppnet.data.formats.voc_classes`.
Exit status 0 when everything is valid, 1 otherwise, 2 for a usage error.

``--json PATH`` writes::

    {"format": "coco" | "yolo" | "voc", "detected": bool, "source": str, "splits": [str],
     "classes": [str], "category_ids": [int],
     "images", "objects", "per_class", "difficult", "crowd", "objects_per_image",
     "box_width", "box_height", "box_relative_size",  # over all splits, see summarize_dataset
     "image_shorter_side",
     "per_split": {split: {the same keys}},
     "missing_labels": int,                           # YOLO images without a label file
     "invalid": [{"file": str, "reason": str}], "decoded": bool, "seconds": float}
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

COMMAND = ("data", "check")
HELP = "Validate a COCO, YOLO or VOC dataset; list every invalid record with its reason."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, nargs="?", help="dataset folder")
    parser.add_argument(
        "--format", default="auto", choices=("auto", "coco", "yolo", "voc"), help="(auto)"
    )
    parser.add_argument("--split", nargs="+", help="splits to check (default: all)")
    parser.add_argument("--classes", help="comma-separated class names (VOC)")
    parser.add_argument("--coco", type=Path, metavar="JSON", help="a COCO annotation file")
    parser.add_argument("--images", type=Path, metavar="DIR", help="its image folder")
    parser.add_argument("--decode", action="store_true", help="also decode every image")
    parser.add_argument(
        "--no-exif", action="store_true", help="ignore EXIF orientation (raw stored pixels)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the report here")


def run(args: argparse.Namespace) -> int:
    from sppnet.data import AnnotationError, DatasetLayoutError, ImageReadError
    from sppnet.data.coco import COCODetection
    from sppnet.data.formats import detect_format, list_splits, open_detection_dataset
    from sppnet.data.summary import summarize_dataset
    from sppnet.utils.atomic import atomic_write_json

    start = time.perf_counter()
    options = {"on_invalid": "skip", "apply_exif": not args.no_exif}
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        if args.coco is not None:
            if args.images is None or args.root is not None:
                print("sppnet data check: error: --coco needs --images and no dataset folder")
                return 2
            datasets = {args.coco.stem: COCODetection(args.images, args.coco, **options)}
            fmt, detected, source = "coco", False, str(args.coco)
        else:
            if args.root is None:
                print("sppnet data check: error: give a dataset folder, or --coco and --images")
                return 2
            detected = args.format == "auto"
            fmt = detect_format(args.root) if detected else args.format
            splits = args.split or list_splits(args.root, fmt)
            if not splits:
                print(f"sppnet data check: error: {args.root}: no split found ({fmt})")
                return 1
            datasets = {
                split: open_detection_dataset(args.root, split, fmt, classes, **options)
                for split in splits
            }
            source = str(args.root)
    except (AnnotationError, DatasetLayoutError, FileNotFoundError, ValueError) as exc:
        print(f"sppnet data check: error: {exc}")
        return 1
    invalid = []
    per_split = {}
    valid_of = {}
    for split, dataset in datasets.items():
        invalid.extend({"file": f, "reason": r} for f, r in dataset.invalid)
        bad = set()
        if args.decode:
            for index in range(len(dataset)):
                try:
                    dataset[index]
                except (ImageReadError, AnnotationError) as exc:
                    invalid.append({"file": str(dataset.image_path(index)), "reason": str(exc)})
                    bad.add(index)
        valid_of[split] = [i for i in range(len(dataset)) if i not in bad]
        per_split[split] = summarize_dataset(dataset, valid_of[split])
    first = next(iter(datasets.values()))
    totals = summarize_dataset(_Chain(list(datasets.values()), valid_of))
    report = {
        "format": fmt,
        "detected": detected,
        "source": source,
        "splits": list(datasets),
        "classes": first.classes,
        "category_ids": first.category_ids,
        **totals,
        "per_split": per_split,
        "missing_labels": sum(len(getattr(d, "missing_labels", [])) for d in datasets.values()),
        "invalid": invalid,
        "decoded": bool(args.decode),
        "seconds": time.perf_counter() - start,
    }
    _print(report)
    if args.json:
        atomic_write_json(args.json, report)
    return 1 if invalid else 0


class _Chain:
    """Several datasets seen as one, for the totals."""

    def __init__(self, datasets: list, valid_of: dict) -> None:
        self.classes = datasets[0].classes
        self.items = [
            (d, i) for d, valid in zip(datasets, valid_of.values(), strict=True) for i in valid
        ]

    def __len__(self) -> int:
        return len(self.items)

    def get_target(self, index: int) -> dict:
        dataset, inner = self.items[index]
        return dataset.get_target(inner)


def _print(report: dict) -> None:
    how = "detected" if report["detected"] else "given"
    print(f"{report['format'].upper()} ({how}) {report['source']}")
    print(f"{len(report['classes'])} classes: {', '.join(report['classes'])}")
    for split, stats in report["per_split"].items():
        _print_stats(split, stats)
    if len(report["per_split"]) > 1:
        _print_stats("all splits", report)
    names = list(report["per_split"])
    width = max(len(c) for c in [*report["classes"], "class"])
    print(f"  {'class':<{width}} " + " ".join(f"{n:>10}" for n in names))
    for name in report["classes"]:
        counts = (report["per_split"][n]["per_class"][name] for n in names)
        print(f"  {name:<{width}} " + " ".join(f"{c:>10}" for c in counts))
    if report["missing_labels"]:
        print(
            f"{report['missing_labels']} image(s) without a label file, read as images without "
            "objects (as ultralytics does)"
        )
    if report["invalid"]:
        print(f"{len(report['invalid'])} invalid record(s):")
        for item in report["invalid"]:
            print(f"  {item['reason']}")
    else:
        print("no invalid records" + (" (every image decoded)" if report["decoded"] else ""))


def _print_stats(name: str, stats: dict) -> None:
    per = stats["objects_per_image"]
    print(
        f"{name}: {stats['images']} valid images, {stats['objects']} objects "
        f"({stats['difficult']} difficult, {stats['crowd']} crowd), {per['empty']} without objects"
    )
    if stats["images"]:
        print(
            f"  objects per image: min {per['min']}, median {per['median']:g}, "
            f"mean {per['mean']:.2f}, max {per['max']}"
        )
    if stats["image_shorter_side"] is not None:
        side = stats["image_shorter_side"]
        print(
            f"  image shorter side {side['min']:g}..{side['max']:g} px (median {side['median']:g})"
        )
    if stats["box_width"] is not None:
        w, h, r = stats["box_width"], stats["box_height"], stats["box_relative_size"]
        print(
            f"  box width {w['min']:.1f}..{w['max']:.1f} px (median {w['median']:.1f}), "
            f"height {h['min']:.1f}..{h['max']:.1f} px (median {h['median']:.1f}), "
            f"sqrt(area / image area) {r['min']:.3f}..{r['max']:.3f} (median {r['median']:.3f})"
        )
