"""``sppnet data make-scenes OUT``: build the digit-scenes dataset (see :mod:`sppnet.data.scenes`).

A second builder, independent of ``make-demo``, to measure how a recipe tuned on the demo holds
on other scenes. ``--json PATH`` writes::

    {"root": str,
     "images": {"train", "val", "test", "trainval": int},
     "objects": {"train", "val", "test": int},     # digit boxes per split
     "seconds": float,                              # wall time of the build
     "excluded_test_digits": int,                   # MNIST digits kept out of the test split
     "config": {...}}                               # sppnet.data.scenes.SceneConfig fields
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

COMMAND = ("data", "make-scenes")
HELP = "Build digit scenes (other photos, any ink colour, large canvases), in VOC layout."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sppnet.data.scenes import SceneConfig

    d = SceneConfig()
    parser.add_argument("out", type=Path, help="folder to create (VOC layout)")
    parser.add_argument("--train", type=int, default=d.num_train, help="train images (%(default)s)")
    parser.add_argument("--val", type=int, default=d.num_val, help="val images (%(default)s)")
    parser.add_argument("--test", type=int, default=d.num_test, help="test images (%(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="same seed, same bytes")
    for flag, default, what in (
        ("--long-side", d.long_side, "the images' longer side, pixels"),
        ("--digit-height", d.digit_height, "the digits' ink height before rotation, pixels"),
        ("--digits", d.digits_per_image, "digits per image"),
    ):
        parser.add_argument(
            flag,
            type=int,
            nargs=2,
            default=default,
            metavar=("MIN", "MAX"),
            help=f"range of {what} (default: %(default)s)",
        )
    parser.add_argument(
        "--max-occlusion",
        type=float,
        default=d.max_occlusion,
        help="largest fraction of a digit's ink later digits may cover (%(default)s)",
    )
    parser.add_argument(
        "--min-contrast",
        type=float,
        default=d.min_contrast,
        help="least ink/background contrast, 0..255 (%(default)s)",
    )
    parser.add_argument(
        "--low-contrast-fraction",
        type=float,
        default=d.low_contrast_fraction,
        help="share of digits drawn with contrast <= --low-contrast-max (%(default)s)",
    )
    parser.add_argument("--low-contrast-max", type=float, default=d.low_contrast_max)
    parser.add_argument(
        "--test-unseen-by",
        type=Path,
        action="append",
        default=[],
        metavar="MANIFEST",
        help="a demo.json or scenes.json: the MNIST digits of its train/val images are kept out "
        "of this test split (repeatable)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the summary here")


def run(args: argparse.Namespace) -> int:
    from sppnet.data.scenes import SceneConfig, digits_used_for_training, make_scenes_dataset
    from sppnet.utils.atomic import atomic_write_json

    try:
        config = SceneConfig(
            num_train=args.train,
            num_val=args.val,
            num_test=args.test,
            seed=args.seed,
            long_side=tuple(args.long_side),
            digit_height=tuple(args.digit_height),
            digits_per_image=tuple(args.digits),
            max_occlusion=args.max_occlusion,
            min_contrast=args.min_contrast,
            low_contrast_fraction=args.low_contrast_fraction,
            low_contrast_max=args.low_contrast_max,
        )
        excluded: set[int] = set()
        for manifest in args.test_unseen_by:
            excluded |= digits_used_for_training(manifest)
        summary = make_scenes_dataset(
            args.out, config, exclude_test_digits=excluded, overwrite=args.overwrite
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"sppnet data make-scenes: error: {exc}")
        return 2
    images, objects = summary["images"], summary["objects"]
    print(f"scenes dataset in {summary['root']} ({summary['seconds']:.1f} s)")
    print(f"{'split':<6} {'images':>7} {'digits':>7}")
    for split in ("train", "val", "test"):
        print(f"{split:<6} {images[split]:>7} {objects[split]:>7}")
    if excluded:
        print(
            f"test split: the {len(excluded)} MNIST digits of the train/val images of "
            f"{len(args.test_unseen_by)} manifest(s) excluded"
        )
    print(f"classes: 0..9; use sppnet.data.scenes.load_scenes({str(args.out)!r}, 'test')")
    if args.json:
        atomic_write_json(
            args.json,
            {**summary, "excluded_test_digits": len(excluded), "config": asdict(config)},
        )
    return 0
