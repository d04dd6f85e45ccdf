"""The data order of :class:`~sppnet.engine.trainer.Trainer`: a function of the seed alone.

Epoch ``e``'s order comes from ``DistributedSampler(seed=seed).set_epoch(e)`` (in the Trainer);
here are the three pieces that make loading it reproducible from any point:

- :class:`EpochBatches` cuts an epoch's indices into batches of ``(epoch, index)`` keys, starting
  at any batch, lazily;
- :class:`SeededDataset` loads each sample with the global RNGs seeded from
  ``(seed, epoch, index)``, so a random augmentation depends on the sample only, not on which
  worker loads it or where a run was resumed;
- :class:`SeededCollate` does the same for ``collate_fn``, seeded from the batch's first sample;

and :func:`epoch_loader` puts them together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from sppnet.engine.loop_config import LoopConfig
from sppnet.engine.signals import ignore_stop_signals
from sppnet.utils.seed import derive_seed, seeded

__all__ = ["EpochBatches", "SeededCollate", "SeededDataset", "epoch_loader"]


class SeededDataset(Dataset):
    """Loads ``dataset[index]`` with the global RNGs seeded from ``(seed, epoch, index)``.

    Keys are ``(epoch, index)`` pairs; items come back as ``(epoch, index, item)`` for
    :class:`SeededCollate`. The caller's RNG state is restored after each item.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int, Any]:
        epoch, index = key
        with seeded(derive_seed(self.seed, epoch, index)):
            return epoch, index, self.dataset[index]


class EpochBatches:
    """Batches of ``(epoch, index)`` keys over ``indices``, from batch ``start`` on (lazy)."""

    def __init__(
        self, indices: list[int], epoch: int, batch_size: int, start: int, drop_last: bool
    ) -> None:
        self.indices, self.epoch, self.batch_size = indices, epoch, batch_size
        self.start, self.drop_last = start, drop_last

    def __len__(self) -> int:
        n, b = len(self.indices), self.batch_size
        return max(0, (n // b if self.drop_last else math.ceil(n / b)) - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b = self.batch_size
        for k in range(self.start, self.start + len(self)):
            yield [(self.epoch, i) for i in self.indices[k * b : (k + 1) * b]]


class SeededCollate:
    """Calls ``collate_fn`` on the items with the RNGs seeded from the batch's first sample."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any], seed: int) -> None:
        self.collate_fn = collate_fn
        self.seed = seed

    def __call__(self, items: list[tuple[int, int, Any]]) -> Any:
        epoch, index, _ = items[0]
        with seeded(derive_seed(self.seed, epoch, index, 1)):
            return self.collate_fn([item for _, _, item in items])


def epoch_loader(
    dataset: Any,
    collate_fn: Callable[[list[Any]], Any],
    epoch_indices: list[int],
    config: LoopConfig,
    epoch: int,
    start_batch: int,
    pin_memory: bool = False,
) -> DataLoader:
    """The loader of one epoch: ``epoch_indices`` (this rank's sampler order) in batches from
    ``start_batch`` on, every sample and batch seeded from ``(config.seed, epoch, index)``."""
    batches = EpochBatches(epoch_indices, epoch, config.batch_size, start_batch, config.drop_last)
    return DataLoader(
        SeededDataset(dataset, config.seed),
        batch_sampler=batches,
        collate_fn=SeededCollate(collate_fn, config.seed),
        num_workers=config.num_workers,
        worker_init_fn=ignore_stop_signals if config.num_workers > 0 else None,
        pin_memory=pin_memory,
        # The loader draws its worker base seed from this generator instead of the global RNG,
        # so creating a loader mid-epoch (on resume) leaves the RNG untouched.
        generator=torch.Generator().manual_seed(derive_seed(config.seed, epoch)),
    )
