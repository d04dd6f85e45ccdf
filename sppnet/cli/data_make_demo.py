"""``sppnet data make-demo OUT``: build the demo detection dataset (see :mod:`sppnet.data.demo`).

``--json PATH`` writes::

    {"root": str,
     "images": {"train", "val", "test", "trainval": int},
     "objects": {"train", "val", "test": int},     # digit boxes per split
     "seconds": float,                              # wall time of the build
     "reused": bool,                                # --reuse found it already built
     "config": {...}}                               # sppnet.data.demo.DemoConfig fields
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

COMMAND = ("data", "make-demo")
HELP = "Build the demo dataset: MNIST digits pasted on real photos, in VOC layout."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sppnet.data.demo import DemoConfig

    d = DemoConfig()
    parser.add_argument("out", type=Path, help="folder to create (VOC layout)")
    parser.add_argument("--train", type=int, default=d.num_train, help="train images (%(default)s)")
    parser.add_argument("--val", type=int, default=d.num_val, help="val images (%(default)s)")
    parser.add_argument("--test", type=int, default=d.num_test, help="test images (%(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="same seed, same bytes")
    parser.add_argument(
        "--long-side",
        type=int,
        nargs=2,
        default=d.long_side,
        metavar=("MIN", "MAX"),
        help="range of the images' longer side, pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--digit-height",
        type=int,
        nargs=2,
        default=d.digit_height,
        metavar=("MIN", "MAX"),
        help="range of the pasted digits' ink height, pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--digits",
        type=int,
        nargs=2,
        default=d.digits_per_image,
        metavar=("MIN", "MAX"),
        help="digits per image (default: %(default)s)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep an existing OUT built with the same parameters (error if it differs)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the summary here")


def run(args: argparse.Namespace) -> int:
    from sppnet.data.demo import DemoConfig, make_demo_dataset
    from sppnet.utils.atomic import atomic_write_json

    try:
        config = DemoConfig(
            num_train=args.train,
            num_val=args.val,
            num_test=args.test,
            seed=args.seed,
            long_side=tuple(args.long_side),
            digit_height=tuple(args.digit_height),
            digits_per_image=tuple(args.digits),
            jpeg_quality=args.jpeg_quality,
        )
        summary = make_demo_dataset(args.out, config, overwrite=args.overwrite, reuse=args.reuse)
    except (ValueError, FileExistsError) as exc:
        print(f"sppnet data make-demo: error: {exc}")
        return 2
    images, objects = summary["images"], summary["objects"]
    how = "reused, same parameters" if summary["reused"] else f"{summary['seconds']:.1f} s"
    print(f"demo dataset in {summary['root']} ({how})")
    print(f"{'split':<6} {'images':>7} {'digits':>7}")
    for split in ("train", "val", "test"):
        print(f"{split:<6} {images[split]:>7} {objects[split]:>7}")
    print(f"classes: 0..9; use sppnet.data.demo.load_demo({str(args.out)!r}, 'train')")
    if args.json:
        atomic_write_json(args.json, {**summary, "config": asdict(config)})
    return 0
