"""Train/validation splits of a dataset folder, and a seeded split when the data has only one.

:func:`train_val_datasets` is what ``sppnet train --data`` uses: the folder's own ``train`` and
``val`` splits when it has both (COCO: ``instances_train[2017].json`` and
``instances_val[2017].json``; YOLO: ``images/train`` and ``images/val``; VOC:
``ImageSets/Main/train.txt`` and ``val.txt``), else a seeded split of its one training split
(``train``, else VOC's ``trainval``, else the only split there is) by :func:`split_dataset`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sppnet.data.detection import DetectionDataset
from sppnet.data.errors import DatasetLayoutError
from sppnet.data.formats import list_splits, open_detection_dataset

__all__ = ["DatasetSubset", "TrainValSplit", "split_dataset", "train_val_datasets"]


class DatasetSubset(torch.utils.data.Dataset):
    """The images ``indices`` of ``dataset``, with the same dataset protocol (``classes``,
    ``category_ids``, ``image_ids``, ``result_image_ids``, ``get_target``, ``image_path``,
    ``format``, ``invalid``)."""

    def __init__(self, dataset: DetectionDataset, indices: Sequence[int], split: str) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.split = split
        self.classes = dataset.classes
        self.category_ids = dataset.category_ids
        self.format = dataset.format
        self.invalid = dataset.invalid

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_ids(self) -> list[str]:
        ids = self.dataset.image_ids
        return [ids[i] for i in self.indices]

    @property
    def result_image_ids(self) -> list[int | str]:
        ids = self.dataset.result_image_ids
        return [ids[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        return self.dataset[self.indices[index]]

    def get_target(self, index: int) -> dict:
        return self.dataset.get_target(self.indices[index])

    def image_path(self, index: int) -> Path:
        return self.dataset.image_path(self.indices[index])

    def __getattr__(self, name: str):
        # Reader-specific attributes (root, image_dir, coco, missing_labels...) of the whole set.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def split_dataset(
    dataset: DetectionDataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[DatasetSubset, DatasetSubset]:
    """Split ``dataset`` into ``(train, val)`` at random, the same way for the same seed.

    ``round(len(dataset) * val_fraction)`` images (at least 1 and at most ``len - 1`` when there
    are two or more) go to val, chosen by ``numpy.random.default_rng(seed).permutation``; both
    parts keep the dataset's order. Deterministic given the seed and the dataset's order (the
    readers' order is fixed: VOC's split file, COCO's ``images`` list, YOLO's sorted files).

    Raises:
        ValueError: ``val_fraction`` not in (0, 1), or fewer than two images.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    count = len(dataset)
    if count < 2:
        raise ValueError(f"cannot split a dataset of {count} image(s) into train and val")
    num_val = min(max(round(count * val_fraction), 1), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    val = sorted(order[:num_val].tolist())
    chosen = set(val)
    train = [i for i in range(count) if i not in chosen]
    name = getattr(dataset, "split", "data")
    return (
        DatasetSubset(dataset, train, f"{name}[seed {seed}, train]"),
        DatasetSubset(dataset, val, f"{name}[seed {seed}, val]"),
    )


@dataclass
class TrainValSplit:
    """What :func:`train_val_datasets` found: the two datasets, the folder's format, and how
    they were made (``description``, e.g. ``"splits train / val"`` or ``"train split 80/20 with
    seed 0"``)."""

    train: DetectionDataset | DatasetSubset
    val: DetectionDataset | DatasetSubset
    format: str
    description: str


def train_val_datasets(
    root: str | os.PathLike[str],
    format: str = "auto",
    classes: Sequence[str] | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    on_invalid: str = "raise",
    **options,
) -> TrainValSplit:
    """The train and validation datasets of a folder (see the module docstring).

    Args:
        root, format, classes, on_invalid, **options: as for
            :func:`~sppnet.data.formats.open_detection_dataset`.
        val_fraction, seed: for the seeded split when the folder has no ``val`` split.

    Raises:
        DatasetLayoutError: no split to train on (the message lists the splits found).
    """
    root = Path(root)
    from sppnet.data.formats import detect_format

    fmt = detect_format(root) if format == "auto" else format
    splits = list_splits(root, fmt)
    by_role = {_role(s): s for s in reversed(splits)}  # "train" before "train2017"

    def open_split(split: str) -> DetectionDataset:
        return open_detection_dataset(root, split, fmt, classes, on_invalid, **options)

    if "train" in by_role and "val" in by_role:
        train, val = open_split(by_role["train"]), open_split(by_role["val"])
        return TrainValSplit(train, val, fmt, f"splits {train.split} / {val.split}")
    if "train" in by_role:
        single = by_role["train"]
    elif "trainval" in splits:
        single = "trainval"
    elif len(splits) == 1:
        single = splits[0]
    else:
        raise DatasetLayoutError(
            f"{root}: no train split to train on ({fmt}); splits there: {splits}"
        )
    train, val = split_dataset(open_split(single), val_fraction, seed)
    percent = round(100 * len(val) / (len(train) + len(val)))
    description = f"{single} split {100 - percent}/{percent} with seed {seed} (no val split)"
    return TrainValSplit(train, val, fmt, description)


def _role(split: str) -> str:
    """``train2017`` -> ``train``: COCO's dated file names play the undated role."""
    return re.sub(r"\d{4}$", "", split)
