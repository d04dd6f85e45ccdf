"""The paper's per-class linear SVMs: the scoring head and two solvers for it.

SPP-net (like R-CNN) scores each window's fc7 features with one linear SVM per class, trained
with hard-negative mining. The released code calls liblinear's L2-regularised L1-loss (hinge) SVM
(``-s 3``) with C = 1e-3, the positive class weighted 2, a bias feature of value 10
(``-B 10``), and features scaled so that their mean L2 norm is 20. For one class that is

    minimise over (w, w_b):  1/2 (|w|^2 + w_b^2) + C * sum_i c_i * max(0, 1 - y_i (w . x_i + B w_b))

with ``y_i`` in {-1, +1}, ``c_i`` = 2 for positives and 1 for negatives, ``B`` = 10; the bias is
``b = B * w_b`` (so it is regularised too, as in liblinear).

Two solvers of that objective, same inputs and outputs:

- :func:`fit_svms_torch`: every class at once in one batched problem (the feature matrix is shared
  by all classes; a label matrix marks each row +1, -1 or "not used" per class), L-BFGS on a
  smoothed hinge (quadratic within ``delta`` of the hinge point) with ``delta`` annealed towards
  0, so it converges to the hinge solution. Runs on any device.
- :func:`fit_svms_liblinear`: scikit-learn's ``LinearSVC(loss="hinge", dual=True)`` (liblinear's
  dual coordinate descent), one class after another, on CPU.

docs/detector.md compares their speed and objective values (``benchmarks/svm_solvers.py``).
Hard-negative mining itself (which rows enter the problem) is in :func:`mine_hard_negatives`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "LinearSVMs",
    "SVMFitResult",
    "feature_scale",
    "fit_svms_liblinear",
    "fit_svms_torch",
    "mine_hard_negatives",
    "svm_objective",
]


class LinearSVMs(nn.Module):
    """One linear SVM per class: ``scores = (x * feature_scale) @ weight.T + bias``.

    Args:
        in_features: D (fc7's width).
        num_classes: object classes, background excluded.

    Shape: Tensor[K, D] -> raw margins Tensor[K, num_classes] (no background column; a window is
    an object of class c when its margin is > 0).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be >= 1, got {in_features}, {num_classes}"
            )
        self.in_features = in_features
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(num_classes, in_features))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addmm(self.bias, x * self.feature_scale, self.weight.t())

    def class_scores(self, x: Tensor) -> Tensor:
        """Same as ``forward``: the per-class margins, Tensor[K, num_classes]."""
        return self(x)

    @torch.no_grad()
    def set_params(self, weight: Tensor, bias: Tensor, feature_scale: float) -> None:
        """Load a fit: ``weight`` Tensor[num_classes, D], ``bias`` Tensor[num_classes]."""
        if weight.shape != self.weight.shape or bias.shape != self.bias.shape:
            raise ValueError(
                f"expected weight {tuple(self.weight.shape)} and bias {tuple(self.bias.shape)}, "
                f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
            )
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        self.feature_scale.fill_(feature_scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


def feature_scale(features: Tensor, target_norm: float = 20.0) -> float:
    """The factor that brings the mean L2 norm of the rows of ``features`` [N, D] to
    ``target_norm`` (20 in the released code)."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty Tensor[N, D], got {tuple(features.shape)}")
    mean_norm = float(features.float().norm(dim=1).mean())
    if mean_norm <= 0 or mean_norm != mean_norm:
        raise ValueError(f"features have mean norm {mean_norm}; cannot scale them")
    return target_norm / mean_norm


@dataclass
class SVMFitResult:
    """A fit: ``weight`` [C, D], ``bias`` [C], the objective per class and the seconds taken."""

    weight: Tensor
    bias: Tensor
    objective: Tensor
    seconds: float


def _check_problem(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2:
        raise ValueError(f"x must be Tensor[N, D], got shape {tuple(x.shape)}")
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be Tensor[N, C] with N = {x.shape[0]}, got {tuple(y.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x holds non-finite values")
    bad = ~((y == 1) | (y == -1) | (y == 0))
    if bool(bad.any()):
        raise ValueError("y must hold only +1 (positive), -1 (negative) and 0 (not used)")
    empty = [c for c in range(y.shape[1]) if not bool((y[:, c] == 1).any())]
    if empty:
        raise ValueError(f"classes (0-based columns) {empty} have no positive example")


def _costs(y: Tensor, c: float, pos_weight: float) -> Tensor:
    """Per-row, per-class hinge weights C * c_i (0 where the row is not used for the class)."""
    return torch.where(y > 0, c * pos_weight, torch.where(y < 0, c, 0.0)).to(torch.float32)


def svm_objective(
    x: Tensor,
    y: Tensor,
    weight: Tensor,
    bias: Tensor,
    c: float = 1e-3,
    pos_weight: float = 2.0,
    bias_multiplier: float = 10.0,
) -> Tensor:
    """The exact hinge objective above for each class, Tensor[C] (float64), given a fit."""
    x64, w64, b64 = x.double(), weight.double(), bias.double()
    margins = y.double() * (x64 @ w64.t() + b64)
    hinge = (1 - margins).clamp(min=0)
    costs = _costs(y, c, pos_weight).double()
    wb = b64 / bias_multiplier
    return 0.5 * (w64.pow(2).sum(1) + wb.pow(2)) + (costs * hinge).sum(0)


def _smoothed_hinge(m: Tensor, delta: float) -> Tensor:
    """max(0, 1 - m) with its corner replaced by a parabola on (1 - delta, 1)."""
    z = 1 - m
    return torch.where(
        z >= delta, z - delta / 2, torch.where(z > 0, z * z / (2 * delta), torch.zeros_like(z))
    )


def fit_svms_torch(
    x: Tensor,
    y: Tensor,
    c: float = 1e-3,
    pos_weight: float = 2.0,
    bias_multiplier: float = 10.0,
    deltas: tuple[float, ...] = (0.5, 0.1, 0.02, 0.004),
    max_iter: int = 100,
    init: tuple[Tensor, Tensor] | None = None,
) -> SVMFitResult:
    """Fit every class's SVM at once (batched L-BFGS on an annealed smoothed hinge).

    Args:
        x: Tensor[N, D] float features, already scaled (see :func:`feature_scale`).
        y: Tensor[N, C] with +1 (positive for the class), -1 (negative) or 0 (row not used for
            that class). Every class needs at least one positive.
        c, pos_weight, bias_multiplier: the objective's constants (module docstring).
        deltas: smoothing widths, solved in turn, each warm-starting the next.
        max_iter: L-BFGS iterations per width.
        init: optional warm start ``(weight [C, D], bias [C])``, e.g. the previous mining round.

    Returns:
        :class:`SVMFitResult` with float32 weight/bias on ``x.device`` and the exact hinge
        objective of the result.
    """
    _check_problem(x, y)
    start = time.perf_counter()
    d = x.shape[1]
    num_classes = y.shape[1]
    xf = x.float()
    yf = y.float()
    costs = _costs(y, c, pos_weight).to(x.device)
    # Parameters: W [D, C] and the bias feature's weight wb [C]; bias = B * wb.
    if init is None:
        w = torch.zeros(d, num_classes, device=x.device)
        wb = torch.zeros(num_classes, device=x.device)
    else:
        w = init[0].t().float().clone()
        wb = (init[1].float() / bias_multiplier).clone()
    w.requires_grad_(True)
    wb.requires_grad_(True)
    for delta in deltas:
        optimizer = torch.optim.LBFGS(
            [w, wb],
            lr=1.0,
            max_iter=max_iter,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )

        def closure(delta: float = delta, optimizer: torch.optim.LBFGS = optimizer) -> Tensor:
            optimizer.zero_grad()
            margins = yf * (xf @ w + bias_multiplier * wb)
            loss = 0.5 * (w.pow(2).sum() + wb.pow(2).sum())
            loss = loss + (costs * _smoothed_hinge(margins, delta)).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    weight = w.detach().t().contiguous()
    bias = (bias_multiplier * wb.detach()).contiguous()
    objective = svm_objective(x, y, weight, bias, c, pos_weight, bias_multiplier)
    return SVMFitResult(weight, bias, objective, time.perf_counter() - start)


def fit_svms_liblinear(
    x: Tensor,
    y: Tensor,
    c: float = 1e-3,
    pos_weight: float = 2.0,
    bias_multiplier: float = 10.0,
    tol: float = 1e-4,
    max_iter: int = 10000,
) -> SVMFitResult:
    """Fit each class's SVM with scikit-learn's liblinear (``LinearSVC(loss="hinge")``), in turn.

    Same arguments and result as :func:`fit_svms_torch`; runs on CPU (``x`` is copied there).
    """
    from sklearn.svm import LinearSVC

    _check_problem(x, y)
    start = time.perf_counter()
    xn = x.detach().float().cpu().numpy()
    yn = y.detach().cpu().numpy()
    weights, biases = [], []
    for k in range(y.shape[1]):
        rows = yn[:, k] != 0
        svc = LinearSVC(
            loss="hinge",
            dual=True,
            C=c,
            class_weight={1: pos_weight, -1: 1.0},
            fit_intercept=True,
            intercept_scaling=bias_multiplier,
            tol=tol,
            max_iter=max_iter,
        )
        svc.fit(xn[rows], yn[rows, k])
        # LinearSVC orders classes_ as [-1, 1], so coef_ already scores the +1 class.
        weights.append(torch.from_numpy(svc.coef_[0].astype("float32")))
        biases.append(float(svc.intercept_[0]))
    weight = torch.stack(weights).to(x.device)
    bias = torch.tensor(biases, dtype=torch.float32, device=x.device)
    objective = svm_objective(x, y, weight, bias, c, pos_weight, bias_multiplier)
    return SVMFitResult(weight, bias, objective, time.perf_counter() - start)


def mine_hard_negatives(
    x: Tensor,
    y: Tensor,
    initial_negatives: Tensor,
    fit: Callable[..., SVMFitResult],
    rounds: int = 2,
    hard_threshold: float = -1.0001,
    easy_threshold: float = -1.2,
    warm_start: bool = True,
) -> tuple[SVMFitResult, list[dict[str, float]]]:
    """R-CNN-style hard-negative mining over an in-memory feature matrix.

    All positives are always in the problem. It starts with the negatives marked in
    ``initial_negatives``; after each fit, negatives of a class scoring above ``hard_threshold``
    join that class's problem and those in it scoring below ``easy_threshold`` leave it, then the
    SVMs are refit. Stops after ``rounds`` refits or when no hard negative is left out.

    Args:
        x: Tensor[N, D] scaled features of every candidate window.
        y: Tensor[N, C] in {+1, -1, 0} (see :func:`fit_svms_torch`).
        initial_negatives: Tensor[N] or Tensor[N, C] bool, the negatives of the first fit.
        fit: :func:`fit_svms_torch` or :func:`fit_svms_liblinear` (or a partial of either).
        rounds: refits after the first.
        hard_threshold / easy_threshold: R-CNN's -1.0001 and -1.2.
        warm_start: pass the previous fit as ``init`` (only :func:`fit_svms_torch` takes it).

    Returns:
        The last fit and one log dict per fit (negatives used, hard negatives added, seconds).
    """
    _check_problem(x, y)
    if initial_negatives.ndim == 1:
        initial_negatives = initial_negatives[:, None].expand_as(y)
    active = (y < 0) & initial_negatives.to(y.device)
    log: list[dict[str, float]] = []
    result: SVMFitResult | None = None
    for round_index in range(rounds + 1):
        y_round = torch.where((y > 0) | active, y, torch.zeros_like(y))
        kwargs = {}
        if warm_start and result is not None and getattr(fit, "func", fit) is fit_svms_torch:
            kwargs["init"] = (result.weight, result.bias)
        result = fit(x, y_round, **kwargs)
        scores = x.float() @ result.weight.t() + result.bias
        hard = (y < 0) & ~active & (scores > hard_threshold)
        easy = active & (scores < easy_threshold)
        log.append(
            {
                "round": round_index,
                "negatives": int(active.sum()),
                "hard_added": int(hard.sum()),
                "easy_removed": int(easy.sum()),
                "seconds": result.seconds,
                "objective": float(result.objective.sum()),
            }
        )
        if not bool(hard.any()) or round_index == rounds:
            break
        active = (active | hard) & ~easy
    assert result is not None
    return result, log
