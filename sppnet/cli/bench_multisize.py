"""``sppnet bench multisize``: the SPP-net classification claim measured on real digits -
multi-size vs single-size training vs a fixed-input network (:mod:`sppnet.benchmarks.multisize`
says what it trains and writes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COMMAND = ("bench", "multisize")
HELP = "multi-size vs single-size SPP training vs a fixed-input (warp) network, on MNIST digits"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sppnet.benchmarks.multisize import VARIANTS, ExperimentConfig

    parser.add_argument("--epochs", type=int, default=ExperimentConfig.epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-size", type=int, default=ExperimentConfig.batch_size)
    parser.add_argument("--lr", type=float, default=ExperimentConfig.lr)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[v.name for v in VARIANTS],
        default=[v.name for v in VARIANTS],
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/img"),
        help="directory for multisize.md, multisize.json, multisize.png ('-': none)",
    )
    parser.add_argument("--json", type=Path, help="also write the results JSON here")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="train nothing: combine these results files (e.g. variants run in parallel)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.benchmarks.multisize import ExperimentConfig, markdown_table, merge, write_outputs
    from sppnet.benchmarks.multisize import run as run_experiment
    from sppnet.utils.atomic import atomic_write_json

    if args.merge:
        results = merge([json.loads(p.read_text(encoding="utf-8")) for p in args.merge])
    else:
        torch.set_num_threads(args.threads)
        config = ExperimentConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seeds=tuple(args.seeds),
            variants=tuple(args.variants),
        )
        results = run_experiment(config)
    if args.json:
        atomic_write_json(args.json, results)
    if str(args.out) != "-":
        write_outputs(results, args.out)
    print(markdown_table(results))
    return 0
