"""MNIST digits at any size: rendering, canvases, the stratified split, the dataset."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sppnet.data.digits import DigitsDataset, render_digits, split_digits


def _digits(n: int = 3) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


@pytest.mark.parametrize("size", [20, 28, 42, 112])
def test_render_sizes_and_values(size):
    digits = _digits()
    out = render_digits(digits, size)
    assert out.shape == (3, 3, size, size) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out[:, 0], out[:, 2])  # grey in all three channels
    expected = F.interpolate(
        digits[:, None].float() / 255, size=(size, size), mode="bilinear", antialias=True
    ).clamp(0, 1)
    torch.testing.assert_close(out[:, :1], expected)


def test_render_at_28_is_the_digit():
    digits = _digits()
    torch.testing.assert_close(render_digits(digits, 28)[:, 0], digits.float() / 255)


def test_render_on_a_wide_canvas_centres_the_digit():
    digits = _digits(2)
    out = render_digits(digits, 28, canvas=(28, 56))
    assert out.shape == (2, 3, 28, 56)
    torch.testing.assert_close(out[:, :, :, 14:42], render_digits(digits, 28))
    assert out[:, :, :, :14].abs().sum() == 0 and out[:, :, :, 42:].abs().sum() == 0
    with pytest.raises(ValueError, match="smaller than the digit"):
        render_digits(digits, 28, canvas=(20, 56))


def test_render_rejects_bad_input():
    with pytest.raises(ValueError, match="positive int"):
        render_digits(_digits(), 0)
    with pytest.raises(ValueError, match="uint8"):
        render_digits(torch.zeros(2, 28, 28), 28)


def test_split_is_stratified_disjoint_and_seeded():
    labels = torch.arange(10).repeat_interleave(50)
    train, test = split_digits(labels, 0.2, seed=3)
    assert len(train) == 400 and len(test) == 100
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert torch.bincount(labels[test]).tolist() == [10] * 10
    again, _ = split_digits(labels, 0.2, seed=3)
    other, _ = split_digits(labels, 0.2, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)
    with pytest.raises(ValueError, match="test_fraction"):
        split_digits(labels, 1.0)


def test_the_bundled_digits():
    train, test = DigitsDataset("train"), DigitsDataset("test")
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(test.labels).tolist() == [100] * 10
    image, label = train[0]
    assert image.shape == (28, 28) and image.dtype == torch.uint8 and isinstance(label, int)
    assert DigitsDataset.classes == [str(d) for d in range(10)]
    with pytest.raises(ValueError, match="split"):
        DigitsDataset("val")
    with pytest.raises(ValueError, match="both images and labels"):
        DigitsDataset(images=_digits())
