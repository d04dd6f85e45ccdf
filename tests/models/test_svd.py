"""Truncated SVD of fc layers: exactness at full rank, the Eckart-Young error, the in-place swap."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sppnet.models.svd import compress_fc, count_linear_macs, svd_linear, truncated_svd_error


def _linear(n_in: int, n_out: int, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out, bias=bias)


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc6 = _linear(48, 32, seed=1)
        self.fc7 = _linear(32, 32, seed=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc7(torch.relu(self.fc6(x))))


class _Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.box_head = _Head()


@pytest.mark.parametrize("bias", [True, False])
def test_full_rank_is_exact(bias: bool) -> None:
    layer = _linear(20, 12, bias=bias).double()
    pair = svd_linear(layer, 12)
    x = torch.randn(7, 20, dtype=torch.float64)
    torch.testing.assert_close(pair(x), layer(x), rtol=1e-10, atol=1e-10)
    assert pair[0].bias is None
    assert (pair[1].bias is None) == (not bias)


def test_low_rank_is_the_best_approximation() -> None:
    layer = _linear(30, 16).double()
    rank = 5
    pair = svd_linear(layer, rank)
    product = pair[1].weight @ pair[0].weight
    assert torch.linalg.matrix_rank(product) == rank
    # Eckart-Young: the residual's Frobenius norm is the norm of the discarded singular values.
    s = torch.linalg.svdvals(layer.weight.detach())
    residual = torch.linalg.matrix_norm(layer.weight.detach() - product)
    torch.testing.assert_close(residual, s[rank:].norm())
    expected = float(s[rank:].norm() / s.norm())
    assert truncated_svd_error(layer, rank) == pytest.approx(expected, rel=1e-9)
    assert truncated_svd_error(layer, 16) == pytest.approx(0.0, abs=1e-7)
    # Bias is carried over unchanged.
    torch.testing.assert_close(pair[1].bias, layer.bias)


def test_rank_one_of_a_rank_one_weight_is_exact() -> None:
    layer = nn.Linear(6, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.outer(torch.arange(1.0, 5.0), torch.linspace(-1, 1, 6)))
    x = torch.randn(3, 6)
    torch.testing.assert_close(svd_linear(layer, 1)(x), layer(x), rtol=1e-5, atol=1e-5)


def test_compress_fc_replaces_in_place_and_counts_macs() -> None:
    detector = _Detector()
    x = torch.randn(5, 48)
    before = detector.box_head(x)
    macs_before = count_linear_macs(detector)
    assert macs_before == 48 * 32 + 32 * 32
    out = compress_fc(detector, 8, None)
    assert out is detector
    assert isinstance(detector.box_head.fc6, nn.Sequential)
    assert isinstance(detector.box_head.fc7, nn.Linear)
    assert count_linear_macs(detector) == 8 * (48 + 32) + 32 * 32
    # Full rank on fc7 keeps the function.
    compress_fc(detector, None, 32)
    after_full = detector.box_head(x)
    exact = _Detector()
    compress_fc(exact, 32, 32)
    torch.testing.assert_close(exact.box_head(x), before, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after_full, before, atol=1e-6)  # fc6 at rank 8 changed it


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"rank must be in \[1, 12\]"):
        svd_linear(_linear(20, 12), 13)
    with pytest.raises(ValueError, match="rank must be in"):
        svd_linear(_linear(20, 12), 0)
    with pytest.raises(TypeError, match="rank must be an int"):
        svd_linear(_linear(20, 12), 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected an nn\.Linear"):
        svd_linear(nn.Conv2d(3, 3, 1), 1)  # type: ignore[arg-type]
    detector = _Detector()
    compress_fc(detector, 4, None)
    with pytest.raises(TypeError, match=r"box_head.fc6 must be an nn.Linear.*Sequential"):
        compress_fc(detector, 4, None)
    with pytest.raises(TypeError, match="found nothing"):
        compress_fc(nn.Module(), 4, 4)
