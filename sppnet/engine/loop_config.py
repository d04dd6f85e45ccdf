"""The plain data of :class:`~sppnet.engine.trainer.Trainer`: its knobs (:class:`LoopConfig`),
what ``fit`` returns (:class:`FitResult`), how it stops (:class:`TrainingInterrupted`,
:class:`NonFiniteLossError`), and moving batches to a device."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sppnet.utils.amp import check_amp

__all__ = [
    "FitResult",
    "LoopConfig",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "check_losses",
    "check_trainer_inputs",
    "jsonable",
    "move_to_device",
]


class NonFiniteLossError(RuntimeError):
    """A loss or gradient norm became NaN or infinite; the update was not applied."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint.

    Attributes:
        checkpoint: the checkpoint saved on the way out.
        step: the number of steps done.
    """

    def __init__(self, message: str, checkpoint: Path | None, step: int) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.step = step


@dataclass
class LoopConfig:
    """Knobs of :class:`Trainer`. New fields are always added with defaults.

    Attributes:
        output_dir: where ``checkpoints/``, ``log.jsonl`` and ``train_config.json`` go.
        batch_size: samples per step *per process*.
        epochs: passes over the data; or give ``max_steps``. If both, the first reached stops.
        max_steps: total optimisation steps.
        seed: fixes data order, per-sample randomness and (with :func:`seed_everything` before
            building the model) the whole run.
        shuffle: reshuffle the data each epoch (as a function of ``(seed, epoch)``).
        drop_last: drop each epoch's last incomplete batch (and the tail that does not divide
            among ranks), so that every step has a full batch.
        num_workers: ``DataLoader`` worker processes.
        checkpoint_every: save every N steps (0: only at epoch ends and at the end).
        keep_last: number of newest checkpoints kept.
        log_every: write a ``log.jsonl`` line every N steps.
        resume: continue from the newest valid checkpoint in ``output_dir`` if there is one.
            Without it, an ``output_dir`` that already holds checkpoints is refused.
        clip_grad_norm: clip the global gradient L2 norm to this value (None: no clipping).
        deterministic: ``torch.use_deterministic_algorithms(True)`` and no cuDNN autotuning;
            needed for bit-exact resume on CUDA, slower there, unnecessary on CPU.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (None: ``cuda:LOCAL_RANK`` if CUDA is
            available, else CPU).
        progress: show a tqdm progress bar (rank 0 only).
        find_unused_parameters: passed to ``DistributedDataParallel``.
        amp: mixed precision of the step function (:data:`~sppnet.utils.amp.AMP_MODES`):
            ``"off"``, ``"bf16"`` (autocast to bfloat16) or ``"fp16"`` (autocast to float16, the
            loss scaled by a ``GradScaler`` whose state is checkpointed).
    """

    output_dir: str | os.PathLike[str]
    batch_size: int = 1
    epochs: int | None = None
    max_steps: int | None = None
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = True
    num_workers: int = 0
    checkpoint_every: int = 100
    keep_last: int = 3
    log_every: int = 10
    resume: bool = False
    clip_grad_norm: float | None = None
    deterministic: bool = False
    device: str | None = None
    progress: bool = True
    find_unused_parameters: bool = False
    amp: str = "off"

    def __post_init__(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
                bound = ">= 0" if allow_zero else ">= 1"
                raise ValueError(f"LoopConfig.{name} must be an int {bound}, got {v!r}")

        positive("batch_size")
        positive("keep_last")
        positive("log_every")
        positive("num_workers", allow_zero=True)
        positive("checkpoint_every", allow_zero=True)
        positive("seed", allow_zero=True)
        if self.epochs is None and self.max_steps is None:
            raise ValueError("LoopConfig needs epochs or max_steps")
        if self.epochs is not None:
            positive("epochs")
        if self.max_steps is not None:
            positive("max_steps")
        check_amp(self.amp, "LoopConfig.amp")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"LoopConfig.clip_grad_norm must be > 0, got {self.clip_grad_norm}")


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        step: optimisation steps done in total (including those before a resume).
        epoch: completed epochs (fractional epochs are not counted).
        checkpoint: the last checkpoint written or resumed from (None if none), on every rank.
        metrics: the last logged averages (``loss`` and the other losses), over ranks.
        resumed_from: the checkpoint the run resumed from, if any.
        history: the log entries of this call (as written to ``log.jsonl``), on every rank.
    """

    step: int
    epoch: int
    checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    resumed_from: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (inside lists, tuples and dicts) moved to ``device``.

    Mappings come back as plain ``dict``; lists, tuples and namedtuples keep their type.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return obj


def check_trainer_inputs(
    model: Any,
    optimizer: Any,
    step: Any,
    dataset: Any,
    config: Any,
    stateful: Mapping[str, Any],
) -> None:
    """TypeError naming the first of :class:`~sppnet.engine.trainer.Trainer`'s arguments that
    is not what it must be."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
    if not callable(step):
        raise TypeError("step must be callable: step(model, batch) -> dict of losses")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError("dataset must be map-style (define __len__ and __getitem__)")
    if not isinstance(config, LoopConfig):
        raise TypeError(f"config must be a LoopConfig, got {type(config).__name__}")
    for name, obj in stateful.items():
        if not isinstance(obj, torch.Generator) and not (
            hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")
        ):
            raise TypeError(
                f"stateful[{name!r}] must be a torch.Generator or have "
                f"state_dict()/load_state_dict(); got {type(obj).__name__}"
            )


def check_losses(losses: Any) -> dict[str, torch.Tensor]:
    """What a step function returned, as a dict, or TypeError: a mapping of scalar tensors with
    the one to minimise under ``"loss"``."""
    if not isinstance(losses, Mapping) or "loss" not in losses:
        raise TypeError(
            "step(model, batch) must return a dict of scalar tensors with the total under "
            f"'loss'; got {type(losses).__name__}"
            + (f" with keys {sorted(losses)}" if isinstance(losses, Mapping) else "")
        )
    for k, v in losses.items():
        if not isinstance(v, torch.Tensor) or v.numel() != 1:
            raise TypeError(f"step(...)[{k!r}] must be a scalar tensor, got {v!r}")
    return dict(losses)
