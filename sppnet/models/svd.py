"""Truncated SVD of fully connected layers (Fast R-CNN, Girshick 2015, section 3.1).

A layer ``y = W x + b`` with ``W`` of shape [out, in] is replaced by two layers without a
non-linearity between them: ``y = U_r (S_r V_r^T x) + b``, where ``U_r S_r V_r^T`` is the rank-``r``
truncated SVD of ``W``. The multiply-adds per input fall from ``in * out`` to ``r * (in + out)``:
for SPP-net's fc6 with (6, 3, 2, 1) levels on 256 channels (12,800 -> 4,096) and ``r = 256`` that is
52.4 M -> 4.3 M, which is what dominates a detector that scores 2,000 windows per image.

The result is the best rank-``r`` approximation of ``W`` in the Frobenius and spectral norms
(Eckart-Young); the error it introduces in the outputs is reported by
:func:`truncated_svd_error`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["compress_fc", "count_linear_macs", "svd_linear", "truncated_svd_error"]


def _check_rank(linear: nn.Linear, rank: int, what: str) -> None:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"{what}: expected an nn.Linear, got {type(linear).__name__}")
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"{what}: rank must be an int, got {type(rank).__name__}")
    limit = min(linear.in_features, linear.out_features)
    if not 1 <= rank <= limit:
        raise ValueError(
            f"{what}: rank must be in [1, {limit}] for a {linear.in_features} -> "
            f"{linear.out_features} layer, got {rank}"
        )


def svd_linear(linear: nn.Linear, rank: int) -> nn.Sequential:
    """Replace ``linear`` by its rank-``rank`` truncated SVD: two ``nn.Linear`` layers in sequence.

    Args:
        linear: ``nn.Linear(in, out)`` (with or without bias), on any device and dtype.
        rank: ``r`` in ``[1, min(in, out)]``.

    Returns:
        ``nn.Sequential(nn.Linear(in, r, bias=False), nn.Linear(r, out))`` on ``linear``'s device
        and dtype (the second without bias if ``linear`` has none). The first layer holds
        ``S_r V_r^T``, the second ``U_r`` and the original bias. At ``r = min(in, out)`` the
        product equals ``W`` up to rounding.

    Raises:
        TypeError: ``linear`` is not an ``nn.Linear`` or ``rank`` is not an int.
        ValueError: ``rank`` is out of range.
    """
    _check_rank(linear, rank, "svd_linear")
    weight = linear.weight.detach()
    # Half-precision layers are decomposed in float32 (LAPACK has no half SVD); the factors are
    # cast back to the layer's dtype.
    work = weight if weight.dtype in (torch.float32, torch.float64) else weight.float()
    u, s, vh = torch.linalg.svd(work, full_matrices=False)
    factory = {"device": weight.device, "dtype": weight.dtype}
    first = nn.Linear(linear.in_features, rank, bias=False, **factory)
    second = nn.Linear(rank, linear.out_features, bias=linear.bias is not None, **factory)
    with torch.no_grad():
        first.weight.copy_((s[:rank, None] * vh[:rank]).to(weight.dtype))
        second.weight.copy_(u[:, :rank].to(weight.dtype))
        if linear.bias is not None:
            second.bias.copy_(linear.bias.detach())
    return nn.Sequential(first, second)


def truncated_svd_error(linear: nn.Linear, rank: int) -> float:
    """Relative Frobenius error ``||W - W_r||_F / ||W||_F`` of the rank-``rank`` approximation.

    Computed from the singular values (``sqrt(sum_{i >= r} s_i^2 / sum_i s_i^2)``); 0.0 for an
    all-zero weight.
    """
    _check_rank(linear, rank, "truncated_svd_error")
    s = torch.linalg.svdvals(linear.weight.detach().double())
    total = float((s**2).sum())
    if total == 0.0:
        return 0.0
    return float(((s[rank:] ** 2).sum() / total).sqrt())


def compress_fc(detector: nn.Module, rank6: int | None, rank7: int | None) -> nn.Module:
    """Apply truncated SVD to a detector's fc6 and fc7, in place, and return the detector.

    Args:
        detector: a module with a ``box_head`` that has ``fc6`` and ``fc7`` ``nn.Linear`` layers
            (:class:`~sppnet.models.detector.SPPNetDetector`).
        rank6: rank for fc6, or None to leave fc6 as it is.
        rank7: rank for fc7, or None to leave fc7 as it is.

    Returns:
        ``detector``, whose ``box_head.fc6`` / ``box_head.fc7`` are now ``nn.Sequential`` pairs
        computing the same function up to the truncation error.

    Raises:
        TypeError: the detector has no ``box_head.fc6`` / ``box_head.fc7`` ``nn.Linear`` (for
            example a detector without fc layers, or one already compressed).
        ValueError: a rank out of range.
    """
    head = getattr(detector, "box_head", None)
    for name, rank in (("fc6", rank6), ("fc7", rank7)):
        if rank is None:
            continue
        layer = getattr(head, name, None)
        if not isinstance(layer, nn.Linear):
            got = "nothing" if layer is None else type(layer).__name__
            raise TypeError(
                f"compress_fc: detector.box_head.{name} must be an nn.Linear to compress, "
                f"found {got}"
            )
        _check_rank(layer, rank, f"compress_fc: box_head.{name}")
        setattr(head, name, svd_linear(layer, rank))
    return detector


def count_linear_macs(module: nn.Module) -> int:
    """Multiply-adds per input row of all ``nn.Linear`` layers in ``module``."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))
