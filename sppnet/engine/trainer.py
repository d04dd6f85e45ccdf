"""A small, generic, crash-safe training loop: :class:`Trainer` + :class:`LoopConfig`.

The caller brings a model, an optimizer, a map-style dataset and a step function::

    def step(model, batch) -> dict[str, Tensor]:   # scalar losses; the one to minimise is "loss"
        images, targets = batch
        return model(images, targets)

    seed_everything(cfg.seed)                     # before building the model
    model = build_model(...)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = Trainer(model, optimizer, step, dataset,
                      LoopConfig(output_dir="runs/x", batch_size=8, epochs=10, resume=True),
                      collate_fn=collate, model_config={"name": "...", ...})
    try:
        result = trainer.fit()
    except TrainingInterrupted as e:      # Ctrl-C / SIGTERM: a checkpoint was saved
        print(e, file=sys.stderr)
        return 130
    except NonFiniteLossError as e:       # names the step and the last good checkpoint
        print(f"error: {e}", file=sys.stderr)
        return 1

and gets:

- **Checkpoints with resume.** Every ``checkpoint_every`` steps, at each epoch end and at the end,
  rank 0 writes ``output_dir/checkpoints/step-N`` (see :mod:`sppnet.engine.checkpoint`; the
  others wait at a barrier) and keeps the ``keep_last`` newest. ``resume=True`` continues from
  the newest *valid* one (incomplete or corrupt ones are skipped and reported).
- **Bit-exact resume.** With a fixed seed, a run killed at any moment (SIGKILL included) and
  resumed reaches the same weights, bit for bit, as an uninterrupted run on the same machine.
  The checkpoint holds the model, optimizer, scheduler and every RNG state (per rank); the data
  order of epoch ``e`` is a function of ``(seed, e)`` only (:class:`DistributedSampler` with
  ``set_epoch``); a resumed epoch skips the batches already done without loading them; and each
  sample is loaded with the global RNGs seeded from ``(seed, epoch, index)``, so random
  augmentation in ``dataset[i]`` or ``collate_fn`` is a function of the sample, not of worker
  count, load order or resume point. Requirement: the step function's own randomness comes
  from the global torch/NumPy/Python RNGs (it does for dropout and ``torch.randperm``), and the
  kernels are deterministic (true on CPU; on CUDA set ``deterministic=True``).
- **Ctrl-C / SIGTERM** finish the current step, save a checkpoint and raise
  :class:`TrainingInterrupted` (a ``KeyboardInterrupt``; commands catch it and exit with 130).
- **Non-finite loss** (or gradient norm, with ``clip_grad_norm``) stops before the update is
  applied with :class:`NonFiniteLossError` naming the step and the last good checkpoint.
- **Logs.** A tqdm bar on rank 0 with the losses, and ``output_dir/log.jsonl``: one JSON object
  per ``log_every`` steps (``step``, ``epoch``, ``lr``, every loss averaged over the steps since
  the last line and over ranks, ``time_s``) and one per epoch end (``"event": "epoch_end"``).
- **torchrun.** Under ``torchrun`` the process group is initialised from the environment, the
  model wrapped in ``DistributedDataParallel`` (a step that bypasses its ``forward`` gets its
  gradients averaged after ``backward``), the data sharded per rank, losses averaged over
  ranks; ``batch_size`` is per process (docs/distributed.md).

- **Hooks** run around each step (:mod:`sppnet.engine.hooks`; the caller adds more with
  ``hooks=``); ``amp`` runs the step under autocast (fp16 with a checkpointed grad scaler).
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate
from tqdm.auto import tqdm

from sppnet.engine import distributed as dist_utils
from sppnet.engine.checkpoint import (
    checkpoint_path,
    prune_checkpoints,
    save_checkpoint,
)
from sppnet.engine.hooks import (
    EpochEndCallback,
    HookBase,
    MetricsLogger,
    PeriodicCheckpointer,
    SaveOnStop,
)
from sppnet.engine.loop_config import (
    FitResult,
    LoopConfig,
    NonFiniteLossError,
    TrainingInterrupted,
    check_losses,
    check_trainer_inputs,
    jsonable,
    move_to_device,
)
from sppnet.engine.run_dir import (
    refuse_existing_run,
    remove_stale_staging,
    trim_log,
)
from sppnet.engine.sampling import epoch_loader
from sppnet.engine.signals import GracefulStop
from sppnet.engine.trainer_state import capture_trainer_state, resume_trainer
from sppnet.utils.amp import autocast
from sppnet.utils.atomic import atomic_write_json
from sppnet.utils.seed import capture_rng_state, restore_rng_state

__all__ = [
    "FitResult",
    "LoopConfig",
    "NonFiniteLossError",
    "StepFn",
    "Trainer",
    "TrainingInterrupted",
    "move_to_device",
]

StepFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]


def __getattr__(name: str) -> Any:
    # The loop's config was ``TrainConfig`` before (too close to the detector's
    # ``TrainingConfig``); the old name works, with a warning, for one release.
    if name == "TrainConfig":
        warnings.warn(
            "sppnet.engine.trainer.TrainConfig is now LoopConfig; the old name goes in the next "
            "release",
            DeprecationWarning,
            stacklevel=2,
        )
        return LoopConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Trainer:
    """The training loop; see the module docstring for what it guarantees.

    Args:
        model: the model, on any device (moved to the training device).
        optimizer: built on ``model.parameters()`` (or a subset, e.g. fc layers only).
        step: ``step(model, batch) -> {"loss": scalar Tensor, ...}``; every value a scalar
            tensor, the same keys on every step and rank. Only ``"loss"`` is back-propagated;
            the others are logged.
        dataset: a map-style dataset (``__len__`` and ``__getitem__(int)``).
        config: :class:`~sppnet.engine.loop_config.LoopConfig`.
        scheduler: an LR scheduler stepped after every optimisation step (express epoch
            schedules in steps, e.g. ``StepLR(step_size=epochs_between * steps_per_epoch)``).
        collate_fn: turns a list of samples into a batch (default: torch's ``default_collate``;
            detection batches of different-size images need e.g. ``lambda b: tuple(zip(*b))``).
        model_config: the JSON object saved as ``config.json`` in every checkpoint, from which
            the model can be rebuilt (so a training checkpoint doubles as an inference one).
        on_epoch_end: ``f(trainer, epoch) -> dict | None``, called on every rank after epoch
            ``epoch`` (0-based) is done and checkpointed; a returned dict of numbers is logged.
            It runs with the RNG state saved and restored around it, so evaluating inside it
            does not change the training run.
        stateful: more things whose state must survive a resume, by name: objects with
            ``state_dict()``/``load_state_dict()`` (a ``GradScaler``, an EMA...) or
            ``torch.Generator`` objects the step function draws from (e.g. a window sampler's).
        hooks: more :class:`~sppnet.engine.hooks.HookBase` objects, run after the metrics logger
            (e.g. :class:`~sppnet.engine.tensorboard.TensorBoardLogger`).

    The dataset (and ``collate_fn``) may define ``set_epoch(epoch)``; it is called before each
    epoch's loader is built (e.g. to pick the image size of multi-size training), also when a
    resumed run re-enters an epoch in the middle.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        step: StepFn,
        dataset: Dataset,
        config: LoopConfig,
        *,
        scheduler: Any | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        model_config: Mapping[str, Any] | None = None,
        on_epoch_end: Callable[[Trainer, int], Mapping[str, float] | None] | None = None,
        stateful: Mapping[str, Any] | None = None,
        hooks: Sequence[HookBase] = (),
    ) -> None:
        check_trainer_inputs(model, optimizer, step, dataset, config, stateful or {})
        self.config = config
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.step_fn = step
        self.dataset = dataset
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.model_config = dict(model_config or {})
        self.on_epoch_end = on_epoch_end
        self.stateful = dict(stateful or {})
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.log_path = self.output_dir / "log.jsonl"

        on_cpu = config.device is not None and torch.device(config.device).type == "cpu"
        dist_utils.init_distributed(backend="gloo" if on_cpu else None)
        self.rank = dist_utils.get_rank()
        self.world_size = dist_utils.get_world_size()
        self.device = torch.device(config.device) if config.device else dist_utils.process_device()
        if self.device.type == "cuda" and self.device.index is None:
            self.device = dist_utils.process_device()  # "cuda" means this rank's GPU
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False

        self._model = model.to(self.device)
        # Disabled (a pass-through) unless amp is fp16; its state is then checkpointed.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        if self.scaler.is_enabled():
            self.stateful.setdefault("grad_scaler", self.scaler)
        self._train_model: nn.Module = self._model
        self.step = 0
        self.last_checkpoint: Path | None = None
        self._ddp_forward_called = False
        self._warned_manual_sync = False
        self._history: list[dict[str, Any]] = []
        self._extra_hooks = list(hooks)
        self._stop: GracefulStop | None = None
        self._stop_now = False
        self._params: list[torch.Tensor] = []
        self.bar: Any = None
        self._active_hooks: list[HookBase] = []
        self._sampler = DistributedSampler(
            dataset,  # type: ignore[arg-type]
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=config.shuffle,
            seed=config.seed,
            drop_last=config.drop_last,
        )
        n_per_rank = self._sampler.num_samples
        b = config.batch_size
        self.steps_per_epoch = n_per_rank // b if config.drop_last else math.ceil(n_per_rank / b)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"dataset of {len(dataset)} samples gives no full batch of {b} per process "  # type: ignore[arg-type]
                f"with {self.world_size} process(es); lower batch_size or set drop_last=False"
            )
        total = []
        if config.epochs is not None:
            total.append(config.epochs * self.steps_per_epoch)
        if config.max_steps is not None:
            total.append(config.max_steps)
        self.total_steps = min(total)

    @property
    def model(self) -> nn.Module:
        """The model being trained, unwrapped (no DDP)."""
        return self._model

    @property
    def epoch(self) -> int:
        """The current (0-based) epoch: ``step // steps_per_epoch``."""
        return self.step // self.steps_per_epoch

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ data

    def _epoch_loader(self, epoch: int, start_batch: int) -> DataLoader:
        for obj in (self.dataset, self.collate_fn):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        self._sampler.set_epoch(epoch)
        return epoch_loader(
            self.dataset,
            self.collate_fn,
            list(self._sampler),
            self.config,
            epoch,
            start_batch,
            pin_memory=self.device.type == "cuda",
        )

    def data_signature(self) -> dict[str, Any]:
        return {
            "dataset_len": len(self.dataset),  # type: ignore[arg-type]
            "global_batch_size": self.config.batch_size * self.world_size,
            "world_size": self.world_size,
            "seed": self.config.seed,
            "shuffle": self.config.shuffle,
            "drop_last": self.config.drop_last,
        }

    def save(self) -> Path:
        """Write a checkpoint of the current step (rank 0; all ranks must call it).

        Returns the checkpoint's path (on every rank, once rank 0 has written it).
        """
        state = capture_trainer_state(self)  # collective: every rank takes part
        path = checkpoint_path(self.checkpoint_dir, self.step)
        if self.is_main_process:
            save_checkpoint(
                path,
                model_state=self._model.state_dict(),
                config=self.model_config,
                state=state,
                step=self.step,
            )
            prune_checkpoints(self.checkpoint_dir, self.config.keep_last)
        dist_utils.barrier()
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------ logging

    def log(self, message: str) -> None:
        """Print ``message`` on rank 0 (above the progress bar)."""
        if self.is_main_process:
            tqdm.write(f"[sppnet] {message}", file=sys.stderr)

    def write_log(self, entry: Mapping[str, Any]) -> None:
        """Append ``entry`` to this run's history and (rank 0) to ``log.jsonl``."""
        self._history.append(dict(entry))
        if not self.is_main_process:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(jsonable(dict(entry)), allow_nan=True) + "\n")

    # ------------------------------------------------------------------ the loop

    def _prepare_output(self) -> Path | None:
        """Check and tidy the output directory, resume if asked; returns the checkpoint resumed
        from."""
        if self.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            refuse_existing_run(self.output_dir, self.checkpoint_dir, self.config.resume)
            remove_stale_staging(self.checkpoint_dir, self.log)
        dist_utils.barrier()
        resumed_from = resume_trainer(self) if self.config.resume else None
        if self.is_main_process:
            trim_log(self.log_path, self.step)
            atomic_write_json(
                self.output_dir / "train_config.json",
                {"config": jsonable(asdict(self.config)), "data": self.data_signature()},
            )
            if resumed_from is not None:
                self.log(f"resumed from {resumed_from} (step {self.step})")
        return resumed_from

    def _wrap_for_training(self) -> None:
        if self.world_size > 1:
            on_cuda = self.device.type == "cuda"
            self._train_model = nn.parallel.DistributedDataParallel(
                self._model,
                device_ids=[self.device.index] if on_cuda else None,
                output_device=self.device.index if on_cuda else None,
                find_unused_parameters=self.config.find_unused_parameters,
            )
            self._train_model.register_forward_pre_hook(self._note_ddp_forward)
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]

    def _hooks(self) -> tuple[MetricsLogger, list[HookBase]]:
        logger = MetricsLogger()
        hooks = [logger, *self._extra_hooks, SaveOnStop(), PeriodicCheckpointer()]
        hooks.append(EpochEndCallback())
        for hook in hooks:
            hook.trainer = self
        return logger, hooks

    def fit(self) -> FitResult:
        """Train until ``epochs``/``max_steps``; see the module docstring.

        Raises:
            TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
            NonFiniteLossError: a loss or the gradient norm is not finite.
            FileExistsError: ``output_dir`` holds checkpoints and ``resume`` is off.
        """
        self._history = []
        resumed_from = self._prepare_output()
        self._wrap_for_training()
        logger, hooks = self._hooks()
        self._active_hooks = hooks
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (self.config.progress and self.is_main_process),
            dynamic_ncols=True,
            unit="step",
        )
        try:
            with GracefulStop() as stop:
                self._stop = stop
                for hook in hooks:
                    hook.before_train()
                while self.step < self.total_steps:
                    epoch, pos = divmod(self.step, self.steps_per_epoch)
                    self.bar.set_description(f"epoch {epoch}")
                    for batch in self._epoch_loader(epoch, pos):
                        values = self.run_step(batch, epoch)
                        self.bar.update(1)
                        for hook in hooks:
                            hook.after_step(epoch, values)
                        if self.step >= self.total_steps:
                            break
        finally:
            self.bar.close()
            self._stop = None
        for hook in hooks:
            hook.after_train()
        return FitResult(
            step=self.step,
            epoch=self.epoch,
            checkpoint=self.last_checkpoint,
            metrics=logger.metrics,
            resumed_from=resumed_from,
            history=self._history,
        )

    def run_step(self, batch: Any, epoch: int) -> dict[str, float]:
        """One optimisation step on ``batch``: the losses (averaged over ranks, checked to be
        finite), backward, gradient sync and clipping, the update, the scheduler. Returns the
        averaged losses (and ``grad_norm`` when clipping)."""
        batch = move_to_device(batch, self.device)
        self._train_model.train()
        self._ddp_forward_called = False
        with autocast(self.device, self.config.amp):
            losses = check_losses(self.step_fn(self._train_model, batch))
        values = self._reduce_losses(losses)
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            self._raise_nonfinite(f"loss {bad}", epoch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        if self.world_size > 1 and not self._ddp_forward_called:
            self._average_gradients()
        if self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self._params, self.config.clip_grad_norm)
            # Under fp16 an overflow is the scaler's to handle: it skips the update.
            if not math.isfinite(float(norm)) and not self.scaler.is_enabled():
                self._raise_nonfinite(f"gradient norm {float(norm)}", epoch)
            values["grad_norm"] = float(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        return values

    def _reduce_losses(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """The losses averaged over ranks, in one all-reduce that also carries every rank's stop
        request (so that all ranks stop at the same step)."""
        names = sorted(losses)
        local = torch.stack([losses[k].detach().float().reshape(()) for k in names])
        requested = self._stop is not None and self._stop.requested
        flag = torch.tensor([float(requested)], device=local.device)
        reduced = dist_utils.all_reduce_mean(torch.cat([local, flag])).tolist()
        self._stop_now = reduced[-1] > 0
        return dict(zip(names, reduced[:-1], strict=True))

    def stop_requested(self) -> bool:
        """Whether a rank asked to stop (SIGINT/SIGTERM) by the end of the current step."""
        late = self.world_size == 1 and self._stop is not None and self._stop.requested
        return self._stop_now or late

    @property
    def stop_signal_name(self) -> str | None:
        """The name of the signal that asked to stop, if any."""
        return None if self._stop is None else self._stop.signal_name

    def _note_ddp_forward(self, module: nn.Module, args: Any) -> None:
        self._ddp_forward_called = True

    def _average_gradients(self) -> None:
        """Average gradients over ranks when the step bypassed the DDP wrapper's forward (a
        step calling ``unwrap_model(model).training_losses(...)`` instead of ``model(...)``
        gets no DDP synchronisation): :func:`~sppnet.engine.distributed.average_gradients`."""
        if not self._warned_manual_sync:
            self.log("step() did not call model(...): averaging gradients with all_reduce")
            self._warned_manual_sync = True
        dist_utils.average_gradients(self._params, self.world_size, self.device)

    def epoch_end(self, epoch: int) -> None:
        """Run ``on_epoch_end`` for ``epoch`` (the RNG state saved and restored around it) and
        log what it returns."""
        if self.on_epoch_end is None:
            return
        rng = capture_rng_state()
        try:
            extra = self.on_epoch_end(self, epoch)
        finally:
            restore_rng_state(rng)
        if extra:
            for hook in self._active_hooks:
                hook.after_epoch(epoch, dict(extra))
            self.write_log({"step": self.step, "epoch": epoch, "event": "epoch_end", **extra})
            self.log(f"epoch {epoch}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))

    def _raise_nonfinite(self, what: str, epoch: int) -> None:
        last = str(self.last_checkpoint) if self.last_checkpoint else "none (no checkpoint yet)"
        raise NonFiniteLossError(
            f"non-finite {what} at step {self.step + 1} (epoch {epoch}); the update was not "
            f"applied and training stopped. Last good checkpoint: {last}. Lower the learning "
            "rate or set clip_grad_norm, then resume from it"
        )
