import pytest
import torch

from sppnet.models.heads import BoxRegressor, FCHead, SoftmaxHead


def test_fc_head_names_shapes_and_eval_determinism():
    head = FCHead(48, (32, 16), dropout=0.5)
    names = [n for n, _ in head.named_parameters()]
    assert names == ["fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"]
    assert (head.in_features, head.out_features) == (48, 16)
    x = torch.randn(5, 48)
    head.eval()
    out = head(x)
    assert out.shape == (5, 16)
    assert torch.equal(out, head(x))
    assert (out >= 0).all()  # ends with ReLU
    expected = torch.relu(head.fc7(torch.relu(head.fc6(x))))
    torch.testing.assert_close(out, expected)


def test_fc_head_dropout_is_active_in_training():
    head = FCHead(8, (64,), dropout=0.5).train()
    x = torch.ones(200, 8)
    out = head(x)
    assert (out == 0).float().mean() > 0.2


@pytest.mark.parametrize("dims", [(), (0,), (16, -1)])
def test_fc_head_rejects_bad_dims(dims):
    with pytest.raises(ValueError, match="dims"):
        FCHead(8, dims)


def test_softmax_head_scores_leave_out_background():
    head = SoftmaxHead(6, num_classes=3)
    x = torch.randn(4, 6)
    logits = head(x)
    assert logits.shape == (4, 4)
    scores = head.class_scores(x)
    assert scores.shape == (4, 3)
    background = logits.softmax(1)[:, 0]
    torch.testing.assert_close(scores.sum(1) + background, torch.ones(4))


def test_box_regressor_starts_as_identity_and_loads_a_fit():
    reg = BoxRegressor(5, num_classes=2)
    x = torch.randn(3, 5)
    assert torch.equal(reg(x), torch.zeros(3, 2, 4))
    w = torch.randn(8, 5)
    b = torch.randn(8)
    reg.set_linear(w, b, feature_scale=2.5)
    expected = ((x * 2.5) @ w.t() + b).view(3, 2, 4)
    torch.testing.assert_close(reg(x), expected)
    # Class 2's deltas are rows 4..7 of the weight.
    torch.testing.assert_close(reg(x)[:, 1], (x * 2.5) @ w[4:].t() + b[4:])
    with pytest.raises(ValueError, match="expected weight"):
        reg.set_linear(torch.zeros(4, 5), torch.zeros(4))
