"""A small, generic, crash-safe training loop: :class:`Trainer` + :class:`TrainConfig`.

The caller brings a model, an optimizer, a map-style dataset and a step function::

    def step(model, batch) -> dict[str, Tensor]:   # scalar losses; the one to minimise is "loss"
        images, targets = batch
        return model(images, targets)

    seed_everything(cfg.seed)                     # before building the model
    model = build_model(...)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = Trainer(model, optimizer, step, dataset,
                      TrainConfig(output_dir="runs/x", batch_size=8, epochs=10, resume=True),
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
- **torchrun.** Under ``torchrun`` the process group is initialised from the environment (NCCL
  on CUDA, gloo on CPU), the model wrapped in ``DistributedDataParallel``, the data sharded per
  rank, losses averaged over ranks. ``batch_size`` is per process: the global batch is
  ``batch_size * world_size``, and the global batch of step ``t`` holds the same samples for
  any world size (so 1 process with batch 8 and 2 with batch 4 see the same data).

The step function receives the model as wrapped for training (DDP under torchrun). Calling it
as ``model(...)`` lets DDP overlap gradient synchronisation with the backward pass; a step that
calls something else (``unwrap_model(model).training_losses(...)``, a sub-module) is detected
and its gradients are averaged over ranks after ``backward`` instead, so either way every rank
applies the same update. Batches are moved to the device first (tensors
inside lists, tuples and dicts).

Data that is just indices (e.g. images whose windows the step function samples itself) fits
too: ``dataset=range(num_images)`` with ``collate_fn=list`` makes each batch a list of ints.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate
from tqdm.auto import tqdm

from sppnet.engine import distributed as dist_utils
from sppnet.engine.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from sppnet.engine.sampling import EpochBatches, SeededCollate, SeededDataset
from sppnet.engine.signals import GracefulStop, ignore_stop_signals
from sppnet.utils.atomic import atomic_write_json, atomic_write_text
from sppnet.utils.seed import capture_rng_state, derive_seed, restore_rng_state

__all__ = [
    "FitResult",
    "NonFiniteLossError",
    "StepFn",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "move_to_device",
]

StepFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]

#: Version of the trainer's own entries in the checkpoint state.
TRAINER_STATE_VERSION = 1


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
class TrainConfig:
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

    def __post_init__(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
                bound = ">= 0" if allow_zero else ">= 1"
                raise ValueError(f"TrainConfig.{name} must be an int {bound}, got {v!r}")

        positive("batch_size")
        positive("keep_last")
        positive("log_every")
        positive("num_workers", allow_zero=True)
        positive("checkpoint_every", allow_zero=True)
        positive("seed", allow_zero=True)
        if self.epochs is None and self.max_steps is None:
            raise ValueError("TrainConfig needs epochs or max_steps")
        if self.epochs is not None:
            positive("epochs")
        if self.max_steps is not None:
            positive("max_steps")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"TrainConfig.clip_grad_norm must be > 0, got {self.clip_grad_norm}")


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


class Trainer:
    """The training loop; see the module docstring for what it guarantees.

    Args:
        model: the model, on any device (moved to the training device).
        optimizer: built on ``model.parameters()`` (or a subset, e.g. fc layers only).
        step: ``step(model, batch) -> {"loss": scalar Tensor, ...}``; every value a scalar
            tensor, the same keys on every step and rank. Only ``"loss"`` is back-propagated;
            the others are logged.
        dataset: a map-style dataset (``__len__`` and ``__getitem__(int)``).
        config: :class:`TrainConfig`.
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
        config: TrainConfig,
        *,
        scheduler: Any | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        model_config: Mapping[str, Any] | None = None,
        on_epoch_end: Callable[[Trainer, int], Mapping[str, float] | None] | None = None,
        stateful: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
        if not callable(step):
            raise TypeError("step must be callable: step(model, batch) -> dict of losses")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError("dataset must be map-style (define __len__ and __getitem__)")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.step_fn = step
        self.dataset = dataset
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.model_config = dict(model_config or {})
        self.on_epoch_end = on_epoch_end
        self.stateful = dict(stateful or {})
        for name, obj in self.stateful.items():
            if not isinstance(obj, torch.Generator) and not (
                hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")
            ):
                raise TypeError(
                    f"stateful[{name!r}] must be a torch.Generator or have "
                    f"state_dict()/load_state_dict(); got {type(obj).__name__}"
                )
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
        self._train_model: nn.Module = self._model
        self.step = 0
        self.last_checkpoint: Path | None = None
        self._ddp_forward_called = False
        self._warned_manual_sync = False
        self._history: list[dict[str, Any]] = []
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

    # ------------------------------------------------------------------ properties

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
        batches = EpochBatches(
            list(self._sampler), epoch, self.config.batch_size, start_batch, self.config.drop_last
        )
        return DataLoader(
            SeededDataset(self.dataset, self.config.seed),
            batch_sampler=batches,
            collate_fn=SeededCollate(self.collate_fn, self.config.seed),
            num_workers=self.config.num_workers,
            worker_init_fn=ignore_stop_signals if self.config.num_workers > 0 else None,
            pin_memory=self.device.type == "cuda",
            # The loader draws its worker base seed from this generator instead of the
            # global RNG, so creating a loader mid-epoch (on resume) leaves the RNG untouched.
            generator=torch.Generator().manual_seed(derive_seed(self.config.seed, epoch)),
        )

    # ------------------------------------------------------------------ checkpoints

    def _trainer_state(self) -> dict[str, Any]:
        rng = dist_utils.all_gather_object(capture_rng_state())
        return {
            "trainer_version": TRAINER_STATE_VERSION,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng,
            "stateful": {
                name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
                for name, obj in self.stateful.items()
            },
            "data": self._data_signature(),
            "train_config": _jsonable(asdict(self.config)),
        }

    def _data_signature(self) -> dict[str, Any]:
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
        state = self._trainer_state()  # collective: every rank takes part
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

    def _resume(self) -> Path | None:
        path = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir.is_dir() else None
        found = dist_utils.all_gather_object(str(path) if path else None)
        if len(set(found)) != 1:
            raise RuntimeError(
                f"ranks disagree on the checkpoint to resume from: {found}; the output directory "
                "must be on storage shared by all nodes (see docs/distributed.md)"
            )
        if self.is_main_process:
            self._set_aside_invalid(path)
        dist_utils.barrier()
        if path is None:
            return None
        ckpt = load_checkpoint(path, map_location=self.device)
        state = ckpt.state
        if state.get("trainer_version") != TRAINER_STATE_VERSION:
            raise ValueError(f"{path} was not written by this Trainer (no trainer_version 1)")
        saved, now = state["data"], self._data_signature()
        for key in ("dataset_len", "global_batch_size", "seed", "shuffle", "drop_last"):
            if saved[key] != now[key]:
                raise ValueError(
                    f"cannot resume from {path}: {key} was {saved[key]!r}, now {now[key]!r}; "
                    "the data order would not continue where it stopped. Use the same settings "
                    "or a new output_dir"
                )
        self._model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        if (self.scheduler is None) != (state["scheduler"] is None):
            raise ValueError(f"cannot resume from {path}: a scheduler was used in one run only")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        saved_stateful = state.get("stateful", {})
        if set(saved_stateful) != set(self.stateful):
            raise ValueError(
                f"cannot resume from {path}: it holds state for {sorted(saved_stateful)}, this "
                f"run has {sorted(self.stateful)}"
            )
        for name, obj in self.stateful.items():
            if isinstance(obj, torch.Generator):
                obj.set_state(saved_stateful[name].cpu())
            else:
                obj.load_state_dict(saved_stateful[name])
        self.step = int(state["step"])
        if saved["world_size"] == self.world_size:
            restore_rng_state(state["rng"][self.rank])
        else:
            # Same data order, but per-rank RNG streams (dropout...) cannot be carried over.
            torch.manual_seed(derive_seed(self.config.seed, self.rank, self.step))
            self._log(
                f"world size changed from {saved['world_size']} to {self.world_size}: data order "
                "continues exactly, random streams are re-seeded (not bit-exact)"
            )
        self.last_checkpoint = path
        return path

    def _set_aside_invalid(self, resumed: Path | None) -> None:
        """Rename the checkpoints newer than ``resumed`` (which failed verification) to
        ``step-N.invalid``: kept for inspection, out of the way of the steps about to be redone."""
        newest_valid = -1 if resumed is None else int(resumed.name.split("-")[1])
        for step, p in list_checkpoints(self.checkpoint_dir):
            if step > newest_valid:
                target = p.with_name(f"{p.name}.invalid")
                if target.exists():
                    shutil.rmtree(target)
                os.replace(p, target)
                self._log(f"set aside unusable checkpoint {p.name} as {target.name}")

    # ------------------------------------------------------------------ logging

    def _log(self, message: str) -> None:
        if self.is_main_process:
            tqdm.write(f"[sppnet] {message}", file=sys.stderr)

    def _prepare_log(self) -> None:
        """Drop log lines past the resumed step (and a torn last line after a SIGKILL)."""
        if not self.log_path.is_file():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("step", 0) <= self.step:
                kept.append(line)
        atomic_write_text(self.log_path, "".join(k + "\n" for k in kept))

    def _write_log(self, entry: Mapping[str, Any]) -> None:
        self._history.append(dict(entry))
        if not self.is_main_process:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_jsonable(dict(entry)), allow_nan=True) + "\n")

    # ------------------------------------------------------------------ the loop

    def _check_output_dir(self) -> None:
        existing = list_checkpoints(self.checkpoint_dir)
        if existing and not self.config.resume:
            raise FileExistsError(
                f"{str(self.output_dir)!r} already holds checkpoints (up to step "
                f"{existing[-1][0]}); pass resume=True (--resume) to continue that run, or "
                "choose a new output directory"
            )

    def _remove_stale_staging(self) -> None:
        """Delete the staging/old directories that a killed save left in ``checkpoints/``."""
        if not self.checkpoint_dir.is_dir():
            return
        for p in self.checkpoint_dir.glob(".step-*.tmp"):
            self._log(f"removing {p.name}, left by an interrupted checkpoint save")
            shutil.rmtree(p, ignore_errors=True)
        for p in self.checkpoint_dir.glob(".step-*.old"):
            # A save that replaced a checkpoint was killed between its two renames: put the
            # old (complete) one back if its place is empty.
            target = self.checkpoint_dir / p.name.split(".")[1]
            if not target.exists() and (p / "manifest.json").is_file():
                os.replace(p, target)
                self._log(f"restored {target.name} from {p.name} (interrupted replacement)")
            else:
                shutil.rmtree(p, ignore_errors=True)

    def _compute_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        losses = self.step_fn(self._train_model, batch)
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

    def fit(self) -> FitResult:
        """Train until ``epochs``/``max_steps``; see the module docstring.

        Raises:
            TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
            NonFiniteLossError: a loss or the gradient norm is not finite.
            FileExistsError: ``output_dir`` holds checkpoints and ``resume`` is off.
        """
        cfg = self.config
        self._history = []
        if self.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._check_output_dir()
            self._remove_stale_staging()
        dist_utils.barrier()
        resumed_from = self._resume() if cfg.resume else None
        if self.is_main_process:
            self._prepare_log()
            atomic_write_json(
                self.output_dir / "train_config.json",
                {"config": _jsonable(asdict(cfg)), "data": self._data_signature()},
            )
            if resumed_from is not None:
                self._log(f"resumed from {resumed_from} (step {self.step})")

        if self.world_size > 1:
            on_cuda = self.device.type == "cuda"
            self._train_model = nn.parallel.DistributedDataParallel(
                self._model,
                device_ids=[self.device.index] if on_cuda else None,
                output_device=self.device.index if on_cuda else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
            self._train_model.register_forward_pre_hook(self._note_ddp_forward)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (cfg.progress and self.is_main_process),
            dynamic_ncols=True,
            unit="step",
        )
        window: dict[str, float] = {}
        window_steps = 0
        metrics: dict[str, float] = {}
        start = time.perf_counter()
        try:
            with GracefulStop() as stop:
                while self.step < self.total_steps:
                    epoch, pos = divmod(self.step, self.steps_per_epoch)
                    bar.set_description(f"epoch {epoch}")
                    for batch in self._epoch_loader(epoch, pos):
                        batch = move_to_device(batch, self.device)
                        self._train_model.train()
                        self._ddp_forward_called = False
                        losses = self._compute_losses(batch)
                        names = sorted(losses)
                        local = torch.stack([losses[k].detach().float().reshape(()) for k in names])
                        flag = torch.tensor([float(stop.requested)], device=local.device)
                        reduced = dist_utils.all_reduce_mean(torch.cat([local, flag])).tolist()
                        values = dict(zip(names, reduced[:-1], strict=True))
                        stop_now = reduced[-1] > 0
                        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
                        if bad:
                            self._raise_nonfinite(f"loss {bad}", epoch)
                        self.optimizer.zero_grad(set_to_none=True)
                        losses["loss"].backward()
                        if self.world_size > 1 and not self._ddp_forward_called:
                            self._average_gradients(params)
                        if cfg.clip_grad_norm is not None:
                            norm = nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
                            if not math.isfinite(float(norm)):
                                self._raise_nonfinite(f"gradient norm {float(norm)}", epoch)
                            values["grad_norm"] = float(norm)
                        self.optimizer.step()
                        if self.scheduler is not None:
                            self.scheduler.step()
                        self.step += 1
                        bar.update(1)

                        for k, v in values.items():
                            window[k] = window.get(k, 0.0) + v
                        window_steps += 1
                        if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                            metrics = {k: v / window_steps for k, v in window.items()}
                            self._write_log(
                                {
                                    "step": self.step,
                                    "epoch": epoch,
                                    "lr": self.optimizer.param_groups[0]["lr"],
                                    **metrics,
                                    "time_s": round(time.perf_counter() - start, 3),
                                }
                            )
                            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
                            window, window_steps = {}, 0

                        epoch_done = self.step % self.steps_per_epoch == 0
                        finished = self.step >= self.total_steps
                        periodic = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0
                        if stop_now or (self.world_size == 1 and stop.requested):
                            path = self.save()
                            self._log(f"{stop.signal_name or 'stop'}: saved {path}")
                            raise TrainingInterrupted(
                                f"training interrupted at step {self.step}; checkpoint {path}; "
                                "continue with resume=True (--resume)",
                                path,
                                self.step,
                            )
                        if epoch_done or finished or periodic:
                            self.save()
                        if epoch_done:
                            self._epoch_end(epoch)
                        if finished:
                            break
        finally:
            bar.close()
        if window_steps:
            metrics = {k: v / window_steps for k, v in window.items()}
        return FitResult(
            step=self.step,
            epoch=self.epoch,
            checkpoint=self.last_checkpoint,
            metrics=metrics,
            resumed_from=resumed_from,
            history=self._history,
        )

    def _note_ddp_forward(self, module: nn.Module, args: Any) -> None:
        self._ddp_forward_called = True

    def _average_gradients(self, params: list[torch.Tensor]) -> None:
        """Average gradients over ranks when the step bypassed the DDP wrapper's forward.

        A step that calls a method of the model (``unwrap_model(model).training_losses(...)``)
        instead of ``model(...)`` gets no DDP synchronisation; this does it with one all-reduce
        per dtype. A parameter keeps ``grad=None`` only if it has none on every rank, so
        optimizers skip exactly the parameters they would skip in a single process.
        """
        if not self._warned_manual_sync:
            self._log("step() did not call model(...): averaging gradients with all_reduce")
            self._warned_manual_sync = True
        trainable = [p for p in params if p.requires_grad]
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in trainable:
            by_dtype.setdefault(p.dtype, []).append(p)
        for group in by_dtype.values():
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in group]
            has = torch.tensor(
                [float(p.grad is not None) for p in group], dtype=group[0].dtype, device=self.device
            )
            flat = torch.cat([g.reshape(-1) for g in grads] + [has])
            torch.distributed.all_reduce(flat)
            flat_grads, has_any = flat[: -len(group)], flat[-len(group) :]
            offset = 0
            for p, present in zip(group, has_any.tolist(), strict=True):
                n = p.numel()
                if present > 0:
                    p.grad = (flat_grads[offset : offset + n] / self.world_size).view_as(p)
                offset += n

    def _epoch_end(self, epoch: int) -> None:
        if self.on_epoch_end is None:
            return
        rng = capture_rng_state()
        try:
            extra = self.on_epoch_end(self, epoch)
        finally:
            restore_rng_state(rng)
        if extra:
            self._write_log({"step": self.step, "epoch": epoch, "event": "epoch_end", **extra})
            self._log(f"epoch {epoch}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))

    def _raise_nonfinite(self, what: str, epoch: int) -> None:
        last = str(self.last_checkpoint) if self.last_checkpoint else "none (no checkpoint yet)"
        raise NonFiniteLossError(
            f"non-finite {what} at step {self.step + 1} (epoch {epoch}); the update was not "
            f"applied and training stopped. Last good checkpoint: {last}. Lower the learning "
            "rate or set clip_grad_norm, then resume from it"
        )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return obj
