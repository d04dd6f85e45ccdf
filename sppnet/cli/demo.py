"""``sppnet demo``: the README's main job - SPP-net trained and evaluated end to end on the demo
dataset (:mod:`sppnet.jobs.demo` says what it does and writes).

Every stage is reused on a second run when its output is there and was made with the same
settings (the dataset, the proposal files, the trained model); ``--fresh`` starts over.
``--compare`` also trains a 5-scale model and one whose trunk stays frozen (fc layers only, the
paper's fine-tuning) and adds them to the report (several more minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

COMMAND = ("demo",)
HELP = "The main job: build the demo data, train SPP-net, evaluate it, write a report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (runs/demo)")
    parser.add_argument("--config", help="a config file instead of the packaged demo config")
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
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: the GPU if any, else cpu)")
    parser.add_argument(
        "--amp",
        choices=("off", "bf16", "fp16"),
        default="off",
        help="mixed precision of training (sets train.amp) and evaluation (off)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write report.json here")


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.jobs.demo import MAIN_DESCRIPTION, demo_config, fmt, run_demo
    from sppnet.utils.atomic import atomic_write_json

    out = Path(args.out)
    if args.threads is not None:
        if args.threads < 1:
            print("sppnet demo: --threads must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        amp = [f"train.amp={args.amp}"] if args.amp != "off" else []
        config = demo_config(out, args.config, [*args.overrides, *amp])
    except ValueError as err:
        print(f"sppnet demo: {err}", file=sys.stderr)
        return 2
    result = run_demo(
        config,
        out,
        compare=args.compare,
        workers=args.workers,
        progress=not args.no_progress,
        device=args.device,
        amp=args.amp,
    )
    report = result.report
    if args.json:
        atomic_write_json(args.json, report)
    print(result.table)
    for name, v in report["variants"].items():
        print(f"  {name:<28} VOC07 mAP {fmt(v['voc07'])}")
    print(
        f"VOC07 mAP@0.5 ({MAIN_DESCRIPTION}): {fmt(report['mAP'])}   "
        f"total {report['seconds']['total']:.0f} s   report: {out / 'report.md'}"
    )
    return 0
