"""``sppnet data convert``: rewrite a COCO, YOLO or VOC dataset folder in another layout.

    sppnet data convert SRC DST --to coco|yolo|voc [--format auto|coco|yolo|voc]
                        [--split S ...] [--classes a,b,...] [--skip-invalid] [--overwrite]
                        [--json PATH]

Every split of SRC (or ``--split``) is read with the reader of its layout (detected unless
``--format``) and written to DST by :func:`sppnet.data.writers.convert_dataset`; images are
copied unchanged. What the target layout cannot hold (YOLO: difficult and crowd objects; VOC:
non-integer boxes, crowd flags) is counted and printed. Invalid records stop the conversion
unless ``--skip-invalid`` (then they are listed). Exit status 0, 1 on an error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = ("data", "convert")
HELP = "Rewrite a COCO, YOLO or VOC dataset in another of these layouts (images copied)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="dataset folder to read")
    parser.add_argument("out", type=Path, help="folder to write")
    parser.add_argument("--to", required=True, choices=("coco", "yolo", "voc"))
    parser.add_argument(
        "--format", default="auto", choices=("auto", "coco", "yolo", "voc"), help="of SRC (auto)"
    )
    parser.add_argument("--split", nargs="+", help="splits to convert (default: all)")
    parser.add_argument("--classes", help="comma-separated class names (VOC sources)")
    parser.add_argument("--skip-invalid", action="store_true", help="leave invalid records out")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the summary here")


def run(args: argparse.Namespace) -> int:
    from sppnet.data.writers import convert_dataset
    from sppnet.utils.atomic import atomic_write_json

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        summary = convert_dataset(
            args.source,
            args.out,
            args.to,
            format=args.format,
            splits=args.split,
            classes=classes,
            on_invalid="skip" if args.skip_invalid else "raise",
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:  # AnnotationError too
        print(f"sppnet data convert: error: {exc}")
        return 1
    print(f"{summary['source_format'].upper()} {args.source} -> {args.to.upper()} {args.out}")
    for split, counts in summary["splits"].items():
        print(f"  {split}: {counts['images']} images, {counts['objects']} objects")
    for key in ("dropped_difficult_or_crowd", "boxes_rounded", "crowd_as_difficult"):
        if summary.get(key):
            print(f"  {key.replace('_', ' ')}: {summary[key]}")
    for item in summary["skipped"]:
        print(f"  skipped ({item['split']}): {item['reason']}")
    if args.json:
        atomic_write_json(args.json, summary)
    return 0
