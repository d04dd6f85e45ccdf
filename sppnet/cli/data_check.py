"""``sppnet data check``: validate a VOC folder or a COCO JSON file and report what is wrong.

    sppnet data check VOC_ROOT [--split trainval] [--classes a,b,...] [--decode] [--json PATH]
    sppnet data check --coco instances.json --images IMAGE_DIR [--decode] [--json PATH]

Every record is read with ``on_invalid="skip"`` so that all problems are listed at once (each
with its file and reason); ``--decode`` also decodes every image (finds files truncated after a
valid header). VOC classes: ``--classes``, else ``VOC_ROOT/classes.txt`` (one name per line, as
the demo dataset writes) if present, else the 20 VOC classes. Exit status 0 when everything is
valid, 1 otherwise.

``--json PATH`` writes::

    {"format": "voc" | "coco", "source": str, "split": str | null, "classes": [str],
     "images": int, "objects": int,            # valid images and their boxes
     "per_class": {name: int}, "difficult": int, "crowd": int,
     "invalid": [{"file": str, "reason": str}], "decoded": bool, "seconds": float}
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

COMMAND = ("data", "check")
HELP = "Validate a VOC folder or COCO JSON file; list every invalid record with its reason."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, nargs="?", help="VOC root (Annotations/, JPEGImages/)")
    parser.add_argument("--split", default="trainval", help="VOC ImageSets/Main split")
    parser.add_argument("--classes", help="comma-separated VOC class names")
    parser.add_argument("--coco", type=Path, metavar="JSON", help="COCO annotation file")
    parser.add_argument("--images", type=Path, metavar="DIR", help="COCO image folder")
    parser.add_argument("--decode", action="store_true", help="also decode every image")
    parser.add_argument(
        "--no-exif", action="store_true", help="ignore EXIF orientation (raw stored pixels)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the report here")


def run(args: argparse.Namespace) -> int:
    from sppnet.data import AnnotationError, ImageReadError
    from sppnet.data.coco import COCODetection
    from sppnet.data.voc import VOC_CLASSES, VOCDetection
    from sppnet.utils.atomic import atomic_write_json

    start = time.perf_counter()
    options = {"on_invalid": "skip", "apply_exif": not args.no_exif}
    try:
        if args.coco is not None:
            if args.images is None or args.root is not None:
                print("sppnet data check: error: --coco needs --images and no VOC root")
                return 2
            dataset = COCODetection(args.images, args.coco, **options)
            fmt, source, split = "coco", str(args.coco), None
        else:
            if args.root is None:
                print("sppnet data check: error: give a VOC root, or --coco and --images")
                return 2
            classes = _voc_classes(args.root, args.classes, VOC_CLASSES)
            dataset = VOCDetection(args.root, args.split, classes, **options)
            fmt, source, split = "voc", str(args.root), args.split
    except (AnnotationError, FileNotFoundError) as exc:
        print(f"sppnet data check: error: {exc}")
        return 1
    invalid = [{"file": f, "reason": r} for f, r in dataset.invalid]
    if args.decode:
        bad = set()
        for index in range(len(dataset)):
            try:
                dataset[index]
            except (ImageReadError, AnnotationError) as exc:
                invalid.append({"file": str(dataset.image_path(index)), "reason": str(exc)})
                bad.add(index)
        valid = [i for i in range(len(dataset)) if i not in bad]
    else:
        valid = list(range(len(dataset)))
    per_class = dict.fromkeys(dataset.classes, 0)
    objects = difficult = crowd = 0
    for index in valid:
        target = dataset.get_target(index)
        for label in target["labels"].tolist():
            per_class[dataset.classes[label - 1]] += 1
        objects += len(target["labels"])
        difficult += int(target["difficult"].sum())
        crowd += int(target["iscrowd"].sum())
    report = {
        "format": fmt,
        "source": source,
        "split": split,
        "classes": dataset.classes,
        "images": len(valid),
        "objects": objects,
        "per_class": per_class,
        "difficult": difficult,
        "crowd": crowd,
        "invalid": invalid,
        "decoded": bool(args.decode),
        "seconds": time.perf_counter() - start,
    }
    _print(report)
    if args.json:
        atomic_write_json(args.json, report)
    return 1 if invalid else 0


def _voc_classes(root: Path, given: str | None, default: tuple[str, ...]) -> list[str]:
    if given:
        return [c.strip() for c in given.split(",") if c.strip()]
    listed = root / "classes.txt"
    if listed.is_file():
        return [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    return list(default)


def _print(report: dict) -> None:
    split = f" ({report['split']})" if report["split"] else ""
    print(f"{report['format'].upper()} {report['source']}{split}: {report['images']} valid images")
    print(f"{report['objects']} objects, {report['difficult']} difficult, {report['crowd']} crowd")
    width = max(len(c) for c in report["classes"])
    for name, count in report["per_class"].items():
        print(f"  {name:<{width}} {count:>7}")
    if report["invalid"]:
        print(f"{len(report['invalid'])} invalid record(s):")
        for item in report["invalid"]:
            print(f"  {item['reason']}")
    else:
        print("no invalid records" + (" (every image decoded)" if report["decoded"] else ""))
