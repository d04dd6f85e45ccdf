"""``sppnet train CONFIG`` / ``sppnet train --data DIR``: train an SPP-net detector from a config
file, or on a COCO, YOLO or VOC folder with no config file.

``--data DIR`` (:mod:`sppnet.jobs.train_folder`): the format detected (``--format`` forces it),
the classes from the data, the recipe of ``--preset`` (``demo``, the default, or ``paper``; a
CONFIG given too replaces it), the folder's train/val splits (or a seeded 80/20 split), proposals
cached in ``OUTPUT/proposals/<split>``, the preset's pixel sizes scaled to the images' median
shorter side (``--keep-sizes`` leaves them); it trains on train and prints the VOC07 mAP on val
(``OUTPUT/eval_val.json``)::

    sppnet train --data path/to/coco_or_yolo_or_voc --output runs/mine
    sppnet eval --weights runs/mine/model --data path/to/... --split val \\
        --proposals runs/mine/proposals/val

The config file (YAML or JSON, see ``configs/demo.yaml``) has three sections: ``model`` (a
:class:`~sppnet.config.DetectorConfig`, optionally ``preset: demo``), ``train``
(a :class:`~sppnet.config.TrainingConfig`) and ``data``::

    data:
      root: runs/demo/data          # a VOC-layout folder
      train_split: train
      test_split: test
      classes: null                 # null: root/classes.txt
      proposals_dir: runs/demo/proposals
      proposals: {mode: fast, shorter_side: 224, max_proposals: 2000}

Any value can be overridden on the command line with ``--set section.key=value`` (the value is
parsed as YAML: ``--set train.epochs_fc=3 --set model.scales=[480,600]``).

Output (``--output DIR``): ``DIR/model`` (the trained detector: ``model.safetensors`` +
``config.json``, loadable with ``SPPNetDetector.from_pretrained``), ``DIR/<stage>/`` (each gradient
stage's checkpoints and ``log.jsonl``), ``DIR/train_summary.json``, ``DIR/tb/`` (TensorBoard event
files of the gradient stages; ``--no-tensorboard`` turns them off). ``--resume`` continues an
interrupted run from its last checkpoints.

The work is :func:`sppnet.engine.detection.run.train_from_config`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMAND = ("train",)
HELP = "Train an SPP-net detector (fine-tuning, SVMs, box regression) from a config file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="YAML/JSON config file (see configs/demo.yaml), or a packaged one: demo, paper "
        "(with --data: replaces the preset's model and train sections)",
    )
    parser.add_argument("--data", metavar="DIR", help="train on this COCO, YOLO or VOC folder")
    parser.add_argument(
        "--format", choices=("auto", "coco", "yolo", "voc"), default="auto", help="of --data"
    )
    parser.add_argument(
        "--preset", choices=("demo", "paper"), default="demo", help="recipe for --data (demo)"
    )
    parser.add_argument(
        "--keep-sizes",
        action="store_true",
        help="with --data: use the preset's pixel sizes as they are instead of scaling them to "
        "the images' median shorter side",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="with --data and no val split: the share held out, seed 0 (0.2)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set train.epochs_fc=3",
    )
    parser.add_argument("--output", required=True, help="output folder (model, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    parser.add_argument("--workers", type=int, default=None, help="proposal worker processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="write no TensorBoard logs (OUTPUT/tb)"
    )
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:N (default: this process's GPU if any, else cpu)"
    )
    parser.add_argument(
        "--amp",
        choices=("off", "bf16", "fp16"),
        help="mixed precision of the gradient stages (sets train.amp; default: the config's)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the training summary here")


def _print_stages(summary: dict) -> None:
    for stage in summary["stages"]:
        info = {k: v for k, v in stage["info"].items() if not isinstance(v, dict)}
        print(f"{stage['name']:>15}: {stage['seconds']:7.1f} s  {json.dumps(info)}")
    print(f"model saved to {summary['model']} ({summary['seconds']['total']:.1f} s in all)")


def _run_folder(args: argparse.Namespace, overrides: list[str]) -> int:
    from sppnet.data import AnnotationError, DatasetLayoutError
    from sppnet.evaluation import format_table
    from sppnet.jobs.train_folder import train_on_folder
    from sppnet.utils.atomic import atomic_write_json

    try:
        result = train_on_folder(
            args.data,
            args.output,
            data_format=args.format,
            preset=args.preset,
            config_file=args.config,
            overrides=overrides,
            val_fraction=args.val_fraction,
            keep_sizes=args.keep_sizes,
            workers=args.workers,
            progress=not args.no_progress,
            tensorboard=not args.no_tensorboard,
            device=args.device,
        )
    except (ValueError, FileNotFoundError, DatasetLayoutError, AnnotationError) as err:
        print(f"sppnet train: {err}", file=sys.stderr)
        return 2
    _print_stages(result.summary)
    print(format_table(result.voc, result.coco))
    print(
        f"val mAP (VOC07 11-point) {result.voc.map('voc07'):.4f}   format {result.format}   "
        f"{result.splits}   report: {Path(args.output) / 'eval_val.json'}"
    )
    if args.json:
        atomic_write_json(args.json, result.summary)
    return 0


def run(args: argparse.Namespace) -> int:
    from sppnet.config import apply_overrides, load_config_file
    from sppnet.engine.detection.run import train_from_config
    from sppnet.engine.trainer import TrainingInterrupted
    from sppnet.utils.atomic import atomic_write_json

    overrides = [*args.overrides, *([f"train.amp={args.amp}"] if args.amp else [])]
    if args.data:
        try:
            return _run_folder(args, overrides)
        except TrainingInterrupted as stop:
            print(f"sppnet train: {stop}", file=sys.stderr)
            return 130
    if not args.config:
        print("sppnet train: give a CONFIG file or --data DIR", file=sys.stderr)
        return 2
    try:
        config = apply_overrides(load_config_file(args.config), overrides)
    except ValueError as err:
        print(f"sppnet train: {err}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    try:
        summary = train_from_config(
            config,
            output,
            resume=args.resume,
            workers=args.workers,
            progress=not args.no_progress,
            tensorboard=not args.no_tensorboard,
            device=args.device,
        ).summary
    except TrainingInterrupted as stop:
        print(f"sppnet train: {stop}", file=sys.stderr)
        return 130
    _print_stages(summary)
    if args.json:
        atomic_write_json(args.json, summary)
    return 0
