"""SVM solvers for the detector's per-class linear SVMs: batched torch L-BFGS vs liblinear.

Both minimise the same objective (sppnet.models.svm: L2-regularised hinge loss, C = 1e-3,
positive weight 2, bias multiplier 10, features scaled to mean norm 20). The problem mimics the
SVM stage of the demo: ``--classes`` classes, ``N`` windows of ``D`` non-negative (post-ReLU)
features, 2% of them positives of some class, the rest negatives of every class.

Prints one table (medians of ``--repeats`` runs, measured side by side in this process): seconds
and summed objective per solver, and the ratio.

    python benchmarks/svm_solvers.py --sizes 10000 50000 --dim 512 --classes 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sppnet.models.svm import feature_scale, fit_svms_liblinear, fit_svms_torch


def make_problem(n: int, d: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes + 1, 64, generator=g) * 2
    owner = torch.zeros(n, dtype=torch.int64)
    positives = max(classes, n // 50)
    owner[:positives] = torch.arange(positives) % classes + 1
    latent = centres[owner] + torch.randn(n, 64, generator=g) * 1.5
    projection = torch.randn(64, d, generator=g) / 8
    x = torch.relu(latent @ projection)
    y = torch.full((n, classes), -1, dtype=torch.int8)
    for c in range(classes):
        y[owner == c + 1, c] = 1
    return x * feature_scale(x, 20.0), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, D = {args.dim}, classes = {args.classes}")
    print(f"{'N':>7} {'solver':>10} {'seconds':>9} {'objective':>11} {'vs liblinear':>13}")
    for n in args.sizes:
        x, y = make_problem(n, args.dim, args.classes)
        rows = {}
        for name, fit in (("liblinear", fit_svms_liblinear), ("torch", fit_svms_torch)):
            times, objective = [], 0.0
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = fit(x, y)
                times.append(time.perf_counter() - start)
                objective = float(result.objective.sum())
            rows[name] = (statistics.median(times), objective)
        base = rows["liblinear"][0]
        for name, (sec, obj) in rows.items():
            print(f"{n:>7} {name:>10} {sec:>9.2f} {obj:>11.4f} {base / sec:>12.2f}x")


if __name__ == "__main__":
    main()
