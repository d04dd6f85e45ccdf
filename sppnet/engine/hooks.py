"""What the training loop does around each step, as hooks (detectron2's ``HookBase`` style).

:class:`~sppnet.engine.trainer.Trainer` calls, in order, every hook's :meth:`HookBase.before_train`
once, :meth:`HookBase.after_step` after each optimisation step, and :meth:`HookBase.after_train`
once the last step is done. Its own hooks, in the order they run: :class:`MetricsLogger`
(``log.jsonl`` and the progress bar), the caller's extra hooks (e.g. TensorBoard),
:class:`SaveOnStop` (Ctrl-C / SIGTERM), :class:`PeriodicCheckpointer`, :class:`EpochEndCallback`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sppnet.engine.loop_config import TrainingInterrupted

if TYPE_CHECKING:
    from sppnet.engine.trainer import Trainer

__all__ = [
    "EpochEndCallback",
    "HookBase",
    "MetricsLogger",
    "PeriodicCheckpointer",
    "SaveOnStop",
]


class HookBase:
    """A hook of :class:`~sppnet.engine.trainer.Trainer`; ``self.trainer`` is set when the
    trainer registers it. Hooks run on every rank (write files on rank 0 only)."""

    trainer: Trainer

    def before_train(self) -> None:
        """Called once, before the first step of this ``fit`` call (after any resume)."""

    def after_step(self, epoch: int, values: dict[str, float]) -> None:
        """Called after each step; ``trainer.step`` is already incremented and ``values`` holds
        the step's losses averaged over ranks (and ``grad_norm`` when clipping)."""

    def after_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called after epoch ``epoch`` (0-based) with what ``on_epoch_end`` returned."""

    def after_train(self) -> None:
        """Called once, after the last step (not when training stops on an exception)."""


class MetricsLogger(HookBase):
    """Averages the losses over every ``log_every`` steps (and the last ones) and writes them
    to ``log.jsonl`` (``step``, ``epoch``, ``lr``, the losses, ``time_s``) and the progress bar.

    Attributes:
        metrics: the last averages written (after training: those of the steps since).
    """

    def before_train(self) -> None:
        self.metrics: dict[str, float] = {}
        self._window: dict[str, float] = {}
        self._steps = 0
        self._start = time.perf_counter()

    def after_step(self, epoch: int, values: dict[str, float]) -> None:
        t = self.trainer
        for k, v in values.items():
            self._window[k] = self._window.get(k, 0.0) + v
        self._steps += 1
        if t.step % t.config.log_every == 0 or t.step == t.total_steps:
            self.metrics = {k: v / self._steps for k, v in self._window.items()}
            t.write_log(
                {
                    "step": t.step,
                    "epoch": epoch,
                    "lr": t.optimizer.param_groups[0]["lr"],
                    **self.metrics,
                    "time_s": round(time.perf_counter() - self._start, 3),
                }
            )
            t.bar.set_postfix({k: f"{v:.4g}" for k, v in self.metrics.items()})
            self._window, self._steps = {}, 0

    def after_train(self) -> None:
        if self._steps:
            self.metrics = {k: v / self._steps for k, v in self._window.items()}


class SaveOnStop(HookBase):
    """After SIGINT/SIGTERM (on any rank), saves a checkpoint and raises
    :class:`~sppnet.engine.loop_config.TrainingInterrupted`."""

    def after_step(self, epoch: int, values: dict[str, float]) -> None:
        t = self.trainer
        if not t.stop_requested():
            return
        path = t.save()
        t.log(f"{t.stop_signal_name or 'stop'}: saved {path}")
        raise TrainingInterrupted(
            f"training interrupted at step {t.step}; checkpoint {path}; continue with "
            "resume=True (--resume)",
            path,
            t.step,
        )


class PeriodicCheckpointer(HookBase):
    """Saves a checkpoint every ``checkpoint_every`` steps, at each epoch end and at the end."""

    def after_step(self, epoch: int, values: dict[str, float]) -> None:
        t = self.trainer
        every = t.config.checkpoint_every
        epoch_done = t.step % t.steps_per_epoch == 0
        if epoch_done or t.step >= t.total_steps or (every and t.step % every == 0):
            t.save()


class EpochEndCallback(HookBase):
    """Runs the trainer's ``on_epoch_end`` after each epoch (once it is checkpointed)."""

    def after_step(self, epoch: int, values: dict[str, float]) -> None:
        if self.trainer.step % self.trainer.steps_per_epoch == 0:
            self.trainer.epoch_end(epoch)
