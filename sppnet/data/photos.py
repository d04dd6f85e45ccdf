"""Real photographs bundled with scikit-image and scikit-learn (no download): demo backgrounds.

The files are read straight from the installed packages' data folders (``skimage/data/`` and
``sklearn/datasets/images/``) with :func:`sppnet.data.images.read_image`; neither package is
imported (importing scikit-learn alone takes seconds).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from sppnet.data.images import read_image

__all__ = ["PHOTO_NAMES", "load_photo", "photo_path"]

_FILES: dict[str, tuple[str, str]] = {
    # name: (package, file inside its data folder)
    "astronaut": ("skimage", "data/astronaut.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "immunohistochemistry": ("skimage", "data/ihc.png"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "camera": ("skimage", "data/camera.png"),
    "coins": ("skimage", "data/coins.png"),
    "brick": ("skimage", "data/brick.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
}

PHOTO_NAMES: tuple[str, ...] = tuple(_FILES)
"""The photos, in a fixed order: nine in colour, then five greyscale (returned as RGB)."""


def photo_path(name: str) -> Path:
    """The file of photo ``name`` in its installed package.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        FileNotFoundError: the package is not installed or lacks the file.
    """
    if name not in _FILES:
        raise KeyError(f"unknown photo {name!r}; known: {', '.join(PHOTO_NAMES)}")
    package, file = _FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = {"skimage": "scikit-image", "sklearn": "scikit-learn"}[package]
        raise FileNotFoundError(f"photo {name!r} comes with {pip_name}, which is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise FileNotFoundError(f"photo {name!r}: {path} not found in the installed {package}")
    return path


@functools.cache
def _load(name: str) -> np.ndarray:
    photo = read_image(photo_path(name)).permute(1, 2, 0).contiguous().numpy()
    photo.flags.writeable = False
    return photo


def load_photo(name: str) -> np.ndarray:
    """The photo ``name`` (one of :data:`PHOTO_NAMES`) as read-only ``[H, W, 3] uint8`` RGB."""
    photo_path(name)  # a clear error for an unknown name or a missing package
    return _load(name)
