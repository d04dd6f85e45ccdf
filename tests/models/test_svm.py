from functools import partial

import pytest
import torch

from sppnet.models.svm import (
    LinearSVMs,
    feature_scale,
    fit_svms_liblinear,
    fit_svms_torch,
    mine_hard_negatives,
    svm_objective,
)


def _problem(n=400, d=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes + 1, d, generator=g) * 3
    owner = torch.randint(0, classes + 1, (n,), generator=g)  # 0 = background
    x = centres[owner] + torch.randn(n, d, generator=g)
    y = torch.full((n, classes), -1, dtype=torch.int8)
    for c in range(classes):
        y[owner == c + 1, c] = 1
    return x, y


def test_feature_scale_gives_the_target_mean_norm():
    x = torch.randn(50, 7) * 3
    s = feature_scale(x, 20.0)
    assert (x * s).norm(dim=1).mean().item() == pytest.approx(20.0, rel=1e-5)
    with pytest.raises(ValueError):
        feature_scale(torch.zeros(0, 3))


def test_linear_svms_forward():
    svms = LinearSVMs(4, 2)
    w, b = torch.randn(2, 4), torch.randn(2)
    svms.set_params(w, b, 3.0)
    x = torch.randn(5, 4)
    torch.testing.assert_close(svms(x), (x * 3.0) @ w.t() + b)
    assert svms.class_scores(x).shape == (5, 2)


def test_torch_solver_matches_liblinear_objective():
    # C large enough that the hinge terms matter (the released code's 1e-3 suits features with
    # mean norm 20 and many samples; here the scale is smaller).
    x, y = _problem()
    x = x * feature_scale(x, 20.0)
    ours = fit_svms_torch(x, y, c=1e-2)
    ref = fit_svms_liblinear(x, y, c=1e-2)
    # Same objective: ours is at least as low as liblinear's, up to 1%.
    assert (ours.objective <= ref.objective * 1.01 + 1e-6).all(), (ours.objective, ref.objective)
    again = svm_objective(x, y, ours.weight, ours.bias, c=1e-2)
    torch.testing.assert_close(again, ours.objective)
    # And the same classifier: training accuracy per class.
    for fit in (ours, ref):
        scores = x @ fit.weight.t() + fit.bias
        accuracy = ((scores > 0) == (y > 0)).float().mean()
        assert accuracy > 0.97


def test_rows_marked_zero_are_ignored():
    x, y = _problem(n=200)
    base = fit_svms_torch(x, y, c=1e-2)
    noise = torch.randn(50, x.shape[1]) * 10
    x2 = torch.cat([x, noise])
    y2 = torch.cat([y, torch.zeros(50, y.shape[1], dtype=y.dtype)])
    more = fit_svms_torch(x2, y2, c=1e-2)
    torch.testing.assert_close(more.weight, base.weight, atol=1e-3, rtol=1e-3)


def test_solver_input_errors():
    x, y = _problem(n=50)
    y_bad = y.clone()
    y_bad[0, 0] = 3
    with pytest.raises(ValueError, match=r"\+1"):
        fit_svms_torch(x, y_bad)
    y_empty = y.clone()
    y_empty[:, 1] = -1
    with pytest.raises(ValueError, match="no positive"):
        fit_svms_torch(x, y_empty)
    with pytest.raises(ValueError, match="y must be"):
        fit_svms_torch(x, y[:10])
    x_nan = x.clone()
    x_nan[3, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        fit_svms_torch(x_nan, y)


def test_hard_negative_mining_adds_the_negatives_the_first_fit_misses():
    # One class; easy negatives far away, hard negatives right next to the positives.
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(40, 2, generator=g) * 0.3 + torch.tensor([2.0, 0.0])
    easy = torch.randn(200, 2, generator=g) * 0.3 + torch.tensor([-3.0, 0.0])
    hard = torch.randn(40, 2, generator=g) * 0.2 + torch.tensor([1.0, 0.0])
    x = torch.cat([pos, easy, hard]) * 3
    y = torch.cat([torch.ones(40), -torch.ones(240)]).to(torch.int8)[:, None]
    initial = torch.zeros(280, dtype=torch.bool)
    initial[40:240] = True  # only the easy negatives at first
    fit = partial(fit_svms_torch, c=1.0)
    result, log = mine_hard_negatives(x, y, initial, fit, rounds=3)
    assert log[0]["hard_added"] > 0
    assert log[0]["negatives"] == 200
    scores = x @ result.weight.t() + result.bias
    assert (scores[240:] < 0).float().mean() > 0.9  # the hard negatives are now rejected
    assert (scores[:40] > 0).float().mean() > 0.9
    # Without mining the hard negatives are mostly accepted.
    first = fit(x, torch.where(initial[:, None] | (y > 0), y, 0))
    assert ((x[240:] @ first.weight.t() + first.bias) > 0).float().mean() > 0.5
