"""sppnet.engine: checkpoints, the training loop, and the torch.distributed set-up.

- :mod:`sppnet.engine.checkpoint`: atomic, verified checkpoints (safetensors + JSON, no pickle).
- :mod:`sppnet.engine.trainer`: :class:`Trainer`, the crash-safe training loop the training
  commands run on.
- :mod:`sppnet.engine.distributed`: torchrun set-up and rank helpers (``get_rank``, ``shard``...).
- :mod:`sppnet.engine.sampling`: the Trainer's reproducible data order (per-sample seeding).
- :mod:`sppnet.engine.signals`: SIGINT/SIGTERM as a request to stop at the next step.
"""

from typing import Any

from sppnet.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from sppnet.engine.distributed import (
    barrier,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    shard,
)
from sppnet.engine.hooks import HookBase
from sppnet.engine.trainer import (
    FitResult,
    LoopConfig,
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "FitResult",
    "HookBase",
    "LoopConfig",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "barrier",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_model",
    "shard",
]


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":  # renamed LoopConfig; warns for one release
        from sppnet.engine import trainer

        return trainer.TrainConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
