"""Saving and restoring :class:`~sppnet.engine.trainer.Trainer`'s own state in a checkpoint."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sppnet.engine import distributed as dist_utils
from sppnet.engine.checkpoint import latest_checkpoint, load_checkpoint
from sppnet.engine.loop_config import jsonable
from sppnet.engine.run_dir import set_aside_invalid
from sppnet.utils.seed import capture_rng_state, derive_seed, restore_rng_state

if TYPE_CHECKING:
    from sppnet.engine.trainer import Trainer

__all__ = ["TRAINER_STATE_VERSION", "capture_trainer_state", "resume_trainer"]

#: Version of the trainer's own entries in the checkpoint state.
TRAINER_STATE_VERSION = 1


def capture_trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resume needs besides the weights: step, optimizer, scheduler, every rank's
    RNG state, the stateful objects, the data signature and the loop config (collective)."""
    rng = dist_utils.all_gather_object(capture_rng_state())
    return {
        "trainer_version": TRAINER_STATE_VERSION,
        "step": trainer.step,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "rng": rng,
        "stateful": {
            name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
            for name, obj in trainer.stateful.items()
        },
        "data": trainer.data_signature(),
        "train_config": jsonable(asdict(trainer.config)),
    }


def resume_trainer(trainer: Trainer) -> Path | None:
    """Load the newest valid checkpoint of ``trainer.checkpoint_dir`` into the trainer (model,
    optimizer, scheduler, stateful objects, step, RNG); set newer unusable ones aside. Returns
    its path, or None when there is none. Every rank takes part."""
    path = latest_checkpoint(trainer.checkpoint_dir) if trainer.checkpoint_dir.is_dir() else None
    found = dist_utils.all_gather_object(str(path) if path else None)
    if len(set(found)) != 1:
        raise RuntimeError(
            f"ranks disagree on the checkpoint to resume from: {found}; the output directory "
            "must be on storage shared by all nodes (see docs/distributed.md)"
        )
    if trainer.is_main_process:
        set_aside_invalid(trainer.checkpoint_dir, path, trainer.log)
    dist_utils.barrier()
    if path is None:
        return None
    ckpt = load_checkpoint(path, map_location=trainer.device)
    state = ckpt.state
    if state.get("trainer_version") != TRAINER_STATE_VERSION:
        raise ValueError(f"{path} was not written by this Trainer (no trainer_version 1)")
    saved, now = state["data"], trainer.data_signature()
    for key in ("dataset_len", "global_batch_size", "seed", "shuffle", "drop_last"):
        if saved[key] != now[key]:
            raise ValueError(
                f"cannot resume from {path}: {key} was {saved[key]!r}, now {now[key]!r}; "
                "the data order would not continue where it stopped. Use the same settings "
                "or a new output_dir"
            )
    trainer.model.load_state_dict(ckpt.model_state)
    trainer.optimizer.load_state_dict(state["optimizer"])
    if (trainer.scheduler is None) != (state["scheduler"] is None):
        raise ValueError(f"cannot resume from {path}: a scheduler was used in one run only")
    if trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    saved_stateful = state.get("stateful", {})
    if set(saved_stateful) != set(trainer.stateful):
        raise ValueError(
            f"cannot resume from {path}: it holds state for {sorted(saved_stateful)}, this "
            f"run has {sorted(trainer.stateful)}"
        )
    for name, obj in trainer.stateful.items():
        if isinstance(obj, torch.Generator):
            obj.set_state(saved_stateful[name].cpu())
        else:
            obj.load_state_dict(saved_stateful[name])
    trainer.step = int(state["step"])
    if saved["world_size"] == trainer.world_size:
        restore_rng_state(state["rng"][trainer.rank])
    else:
        # Same data order, but per-rank RNG streams (dropout...) cannot be carried over.
        torch.manual_seed(derive_seed(trainer.config.seed, trainer.rank, trainer.step))
        trainer.log(
            f"world size changed from {saved['world_size']} to {trainer.world_size}: data order "
            "continues exactly, random streams are re-seeded (not bit-exact)"
        )
    trainer.last_checkpoint = path
    return path
