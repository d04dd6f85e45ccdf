"""``sppnet bench svm``: the detector's SVM solvers side by side, batched torch L-BFGS vs
liblinear, on a problem shaped like the demo's SVM stage (:mod:`sppnet.benchmarks.svm`)."""

from __future__ import annotations

import argparse

COMMAND = ("bench", "svm")
HELP = "SVM solvers for the detector's per-class SVMs: torch L-BFGS vs liblinear"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000], help="N values")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension (512)")
    parser.add_argument("--classes", type=int, default=10, help="classes (10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median (3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from sppnet.benchmarks.svm import format_svm_table, run_svm_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, D = {args.dim}, classes = {args.classes}")
    print(format_svm_table(run_svm_benchmark(args.sizes, args.dim, args.classes, args.repeats)))
    return 0
