"""SVM solvers for the detector's per-class linear SVMs: batched torch L-BFGS vs liblinear.

Both minimise the same objective (sppnet.models.svm: L2-regularised hinge loss, C = 1e-3,
positive weight 2, bias multiplier 10, features scaled to mean norm 20). The problem mimics the
SVM stage of the demo: ``--classes`` classes, ``N`` windows of ``D`` non-negative (post-ReLU)
features, 2% of them positives of some class, the rest negatives of every class.

Prints one table (medians of ``--repeats`` runs, measured side by side in this process): seconds
and summed objective per solver, and the ratio.

    sppnet bench svm --sizes 10000 50000 --dim 512 --classes 10
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sppnet.benchmarks._timing import interleaved_medians
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


def run_svm_benchmark(
    sizes: Sequence[int], dim: int, classes: int, repeats: int
) -> list[dict[str, Any]]:
    """One row per (N, solver): median seconds (the solvers taking turns), summed objective and
    the speed-up against liblinear."""
    solvers = {"liblinear": fit_svms_liblinear, "torch": fit_svms_torch}
    rows = []
    for n in sizes:
        x, y = make_problem(n, dim, classes)
        objective = {name: float(fit(x, y).objective.sum()) for name, fit in solvers.items()}
        seconds = interleaved_medians(
            {name: lambda f=fit, x=x, y=y: f(x, y) for name, fit in solvers.items()},
            repeats,
            warmup=0,
        )
        for name in solvers:
            rows.append(
                {
                    "n": n,
                    "solver": name,
                    "seconds": seconds[name],
                    "objective": objective[name],
                    "vs_liblinear": seconds["liblinear"] / seconds[name],
                }
            )
    return rows


def format_svm_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`run_svm_benchmark` as a fixed-width table."""
    lines = [f"{'N':>7} {'solver':>10} {'seconds':>9} {'objective':>11} {'vs liblinear':>13}"]
    for r in rows:
        lines.append(
            f"{r['n']:>7} {r['solver']:>10} {r['seconds']:>9.2f} {r['objective']:>11.4f} "
            f"{r['vs_liblinear']:>12.2f}x"
        )
    return "\n".join(lines)
