"""TensorBoard logs of training: a :class:`~sppnet.engine.hooks.HookBase` that writes event files.

Scalars, each tagged ``<prefix>/<name>`` at the trainer's global step:

- every value the step function returns (``loss``, ``loss_classifier``, ``loss_box_reg``...),
  averaged over ranks, every step;
- ``lr`` (the first parameter group's) and ``lr_group<i>`` for further groups;
- throughput over each ``log_every`` window: ``steps_per_s`` and, for each count the caller
  names in ``items_per_step`` (e.g. ``{"images": 2, "windows": 512}``), ``<count>_per_s``;
- at each epoch end, what ``on_epoch_end`` returned (e.g. a held-out accuracy or mAP).

Only rank 0 writes (under torchrun the others do nothing). Read the files with TensorBoard
(``tensorboard --logdir OUTPUT/tb``) or ``tensorboard``'s ``EventAccumulator``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sppnet.engine.hooks import HookBase

__all__ = ["TensorBoardLogger", "write_scalars"]


def _writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # tensorboard is a dependency; say what is missing if it is not
        raise ImportError(
            "TensorBoard logging needs the 'tensorboard' package (pip install tensorboard), or "
            "turn it off (--no-tensorboard)"
        ) from err
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardLogger(HookBase):
    """Writes the training scalars of one :class:`~sppnet.engine.trainer.Trainer` run to
    ``log_dir`` (see the module docstring).

    Args:
        log_dir: the event files' folder (several runs may share it: their tags differ by
            ``prefix``).
        prefix: the tag prefix, e.g. the stage name (``"end_to_end"``).
        items_per_step: counts processed per step over all ranks, for throughput.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        prefix: str = "train",
        items_per_step: Mapping[str, float] | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.prefix = prefix
        self.items_per_step = dict(items_per_step or {})
        self._writer: Any = None

    def before_train(self) -> None:
        if self.trainer.is_main_process:
            self._writer = _writer(self.log_dir)
        self._window_start = time.perf_counter()
        self._window_steps = 0

    def after_step(self, epoch: int, values: dict[str, float]) -> None:
        if self._writer is None:
            return
        t = self.trainer
        step = t.step
        for name, value in values.items():
            self._writer.add_scalar(f"{self.prefix}/{name}", value, step)
        for i, group in enumerate(t.optimizer.param_groups):
            self._writer.add_scalar(
                f"{self.prefix}/lr{'' if i == 0 else f'_group{i}'}", group["lr"], step
            )
        self._window_steps += 1
        if step % t.config.log_every == 0 or step == t.total_steps:
            seconds = max(time.perf_counter() - self._window_start, 1e-9)
            rate = self._window_steps / seconds
            self._writer.add_scalar(f"{self.prefix}/steps_per_s", rate, step)
            for name, count in self.items_per_step.items():
                self._writer.add_scalar(f"{self.prefix}/{name}_per_s", rate * count, step)
            self._window_start, self._window_steps = time.perf_counter(), 0

    def after_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"{self.prefix}/{name}", float(value), self.trainer.step)

    def after_train(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_scalars(
    log_dir: str | os.PathLike[str], scalars: Mapping[str, float], step: int = 0
) -> None:
    """Add ``scalars`` (tag -> value) at ``step`` to the event files in ``log_dir`` (e.g. the
    mAP an evaluation after training measured). Call it on rank 0 only."""
    writer = _writer(Path(log_dir))
    try:
        for tag, value in scalars.items():
            writer.add_scalar(tag, float(value), step)
    finally:
        writer.close()
